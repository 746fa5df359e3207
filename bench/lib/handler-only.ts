/**
 * Handler-only runs: the generator (bench/generator.ts) plays Mongrel2 and
 * feeds a handler directly, so no HTTP server is in the way. Optionally the
 * generator is pinned to CPU 0 and the handler (all its processes) to CPU 1
 * with taskset, which is what "requests per second on one core" means here.
 */
import { join } from 'node:path';
import type { GeneratorOptions, GeneratorResult } from '../generator.ts';
import { spawnTracked, stopTracked, type Tracked } from './children.ts';
import { freePorts } from '../../test/helpers/ports.ts';
import { PYTHON_BIN, startFleet, stopTree, waitForOutput, type BenchPaths, type FleetFlags } from './servers.ts';

/** Which handler a handler-only run feeds. */
export type HandlerUnderTest =
  | { kind: 'python' }
  | { kind: 'm2fleet'; app: string; flags: FleetFlags };

/** One handler-only run's setup. */
export interface HandlerOnlySpec {
  id: string;
  label: string;
  handler: HandlerUnderTest;
  load: Omit<GeneratorOptions, 'sendPort' | 'recvPort' | 'sender'>;
  /** Generator on CPU 0, handler on CPU 1. */
  pin: boolean;
}

/** What one handler-only run measured. */
export interface HandlerOnlyResult {
  id: string;
  result: GeneratorResult;
  /** ms from spawning the m2fleet CLI to its `ready` line (m2fleet only). */
  readyMs: number | null;
  /** ms from each worker process's spawn to its readiness (m2fleet only). */
  processReadyMs: number[];
}

function parseLine(line: string): Record<string, unknown> | null {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function pinned(pin: boolean, cpu: number, command: string, args: string[]): [string, string[]] {
  return pin ? ['/usr/bin/taskset', ['-c', String(cpu), command, ...args]] : [command, args];
}

/** Runs one handler-only measurement; bounded by the load's seconds + 90 s. */
export async function runHandlerOnly(paths: BenchPaths, spec: HandlerOnlySpec): Promise<HandlerOnlyResult> {
  const [sendPort, recvPort] = await freePorts(2);
  const options: GeneratorOptions = { ...spec.load, sendPort: sendPort!, recvPort: recvPort!, sender: 'bench-generator' };
  const [cmd, args] = pinned(spec.pin, 0, process.execPath,
    ['--import', 'tsx', join(paths.root, 'bench', 'generator.ts'), JSON.stringify(options)]);
  const generator = spawnTracked('generator', cmd, args, { cwd: paths.root, stdio: ['pipe', 'pipe', 'pipe'] });
  let handler: Tracked | null = null;
  try {
    await waitForOutput(generator, (line) => line.includes('"event":"bound"'), 20_000);
    const sendSpec = `tcp://127.0.0.1:${sendPort}`;
    const recvSpec = `tcp://127.0.0.1:${recvPort}`;
    let readyMs: number | null = null;
    let processReadyMs: number[] = [];
    if (spec.handler.kind === 'python') {
      const [pc, pa] = pinned(spec.pin, 1, PYTHON_BIN, [join(paths.root, 'bench', 'python-handler.py'), sendSpec, recvSpec]);
      handler = spawnTracked('python-handler', pc, pa);
      // It waits for nothing: give its PUB time to see the generator's
      // subscription, or its first replies are dropped (slow joiner).
      await new Promise((r) => setTimeout(r, 1000));
    } else {
      const fleet = await startFleet(paths, sendSpec, recvSpec, spec.handler.app, spec.handler.flags,
        spec.pin ? 1 : undefined);
      handler = fleet.process;
      readyMs = fleet.readyMs;
      processReadyMs = fleet.processReadyMs;
    }

    const done = waitForOutput(generator, (line) => line.startsWith('{"event":"result"') || line.startsWith('{"event":"error"'),
      (spec.load.seconds + 90) * 1000);
    generator.child.stdin!.write(`${JSON.stringify({ rootPid: handler.pid })}\n`);
    const line = parseLine(await done);
    if (line === null || line['event'] !== 'result') {
      throw new Error(`generator failed: ${String(line?.['message'] ?? 'no result')}`);
    }
    const result = line as unknown as GeneratorResult;
    if (result.requests === 0) {
      throw new Error(`the handler answered nothing (${result.receiveErrors ?? 0} receive errors ${result.lastReceiveError ?? ''})`);
    }
    return { id: spec.id, result, readyMs, processReadyMs };
  } catch (err) {
    throw new Error(`handler-only ${spec.id}: ${(err as Error).message}\n${handler?.output().slice(-1500) ?? ''}`);
  } finally {
    if (handler) await stopTree(handler);
    await stopTracked(generator, 'SIGTERM', 3000);
  }
}
