/**
 * Handler-only load generator: plays Mongrel2 towards m2fleet (or any
 * handler) without HTTP. It binds what Mongrel2 binds, a PUSH on the
 * send_spec and a SUB on the recv_spec, pushes pre-built request frames
 * for `window` connections (one request in flight per connection, like
 * keep-alive clients), reads the reply frames, and reports requests per
 * second, latency, the handler tree's CPU per request and its RSS.
 *
 *   node --import tsx bench/generator.ts '<GeneratorOptions as JSON>'
 *
 * stdout: one JSON line {"event":"bound"} once both sockets are bound; then
 * it waits for a stdin line {"rootPid":N} (the handler's pid; its whole
 * process tree is measured) and ends with one {"event":"result",...} line.
 * Every phase is bounded in requests and in seconds; it exits by itself.
 */
import { createInterface } from 'node:readline';
import { Push, Subscriber } from 'zeromq';
import { buildCreditsNotice, buildHttpRequestFrame, parseReplyFrame } from './lib/mongrel2-message.ts';
import { processTree, rssMiB, threadCpu, treeCpu } from './lib/proc.ts';
import { ResponseTracker } from './lib/response-tracker.ts';
import { percentile } from './lib/stats.ts';

/** What one generator run does. */
export interface GeneratorOptions {
  sendPort: number;
  recvPort: number;
  /** Wire: send_ident put first in every request. */
  sender: string;
  /** Connections, each with one request in flight. */
  window: number;
  /** Requests before measuring (not counted). */
  warmup: number;
  /** Measured requests at most. */
  requests: number;
  /** Measured seconds at most. */
  seconds: number;
  method: 'GET' | 'POST';
  uri: string;
  /** Request body (POST), as text. */
  body?: string;
  /**
   * Play `download.flow_control=1`: the first request of each connection
   * carries DOWNLOAD_CREDITS 102400, and every reply frame is answered
   * with a credits notice for its body bytes, as Mongrel2 does.
   */
  flowControl?: boolean;
  /** Sample the tree's RSS every second (the long RSS run). */
  sampleRss?: boolean;
  /** Give up when the handler sends nothing for this long (ms). Default 10000. */
  stallMs?: number;
}

/** One RSS sample of the handler tree. */
export interface RssSample {
  requests: number;
  rssMiB: number[];
}

/** What the generator reports. */
export interface GeneratorResult {
  event: 'result';
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** The handler's root pid (m2fleet: the master); absent in runs saved before it was recorded. */
  rootPid?: number;
  /** CPU seconds of the handler tree during the measured phase, per pid. */
  cpuSecondsByPid: Record<string, number>;
  /** The same per thread, keyed "pid/tid name" (threads using ≥ 1 % of it). */
  cpuSecondsByThread?: Record<string, number>;
  handlerCpuMicrosPerRequest: number;
  /** The generator's own CPU use over the measured phase, in cores. */
  generatorCores: number;
  rssMiBByPid: Record<string, number>;
  /** Reply frames per completed response (1 = each response one message). */
  framesPerResponse: number;
  /** Close frames (empty body) seen: each means a closed keep-alive connection. */
  closeFrames: number;
  connectionCloseHeaders: number;
  non200: number;
  malformed: number;
  /** True when the run stopped because the handler went quiet (`stallMs`). */
  stalled: boolean;
  /** Requests still unanswered at the end (after a stall). */
  unanswered?: number;
  /** Receive errors of the generator's SUB, and the last one. */
  receiveErrors?: number;
  lastReceiveError?: string;
  rssSamples: RssSample[];
}

interface Conn {
  id: number;
  frame: Buffer;
  /** The frame of the connection's first request (DOWNLOAD_CREDITS in flow-control mode). */
  firstFrame: Buffer;
  first: boolean;
  sentAt: number;
  inFlight: boolean;
  tracker: ResponseTracker;
}

function emit(value: object): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Resolves with the first stdin line, parsed. */
function readCommand(): Promise<{ rootPid: number }> {
  const rl = createInterface({ input: process.stdin });
  return new Promise((resolve, reject) => {
    rl.once('line', (line) => {
      try {
        resolve(JSON.parse(line) as { rootPid: number });
      } catch (err) {
        reject(err);
      }
      rl.close();
    });
    rl.once('close', () => reject(new Error('generator: stdin closed before the start command')));
  });
}

/** Runs the load; all state lives here so a run is one call. */
export async function runGenerator(
  opts: GeneratorOptions, start: () => Promise<{ rootPid: number }>,
): Promise<GeneratorResult> {
  const push = new Push({ sendHighWaterMark: 100_000, linger: 0 });
  const sub = new Subscriber({ receiveHighWaterMark: 100_000, linger: 0 });
  await push.bind(`tcp://127.0.0.1:${opts.sendPort}`);
  await sub.bind(`tcp://127.0.0.1:${opts.recvPort}`);
  sub.subscribe();
  let rootPid = 0;

  const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
  const headers: Record<string, string> = body ? { 'content-type': 'application/json', accept: '*/*' } : { accept: '*/*' };
  const conns: Conn[] = [];
  for (let id = 1; id <= opts.window; id++) {
    const parts = { sender: opts.sender, connId: id, method: opts.method, uri: opts.uri, headers, ...(body ? { body } : {}) };
    const frame = buildHttpRequestFrame(parts);
    const firstFrame = opts.flowControl
      ? buildHttpRequestFrame({ ...parts, extra: { DOWNLOAD_CREDITS: '102400' } })
      : frame;
    conns.push({ id, frame, firstFrame, first: true, sentAt: 0, inFlight: false, tracker: new ResponseTracker() });
  }
  // Credits notices, one per (connection, byte count), built once.
  const notices = new Map<string, Buffer>();
  const creditsNotice = (id: number, bytes: number): Buffer => {
    const key = `${id} ${bytes}`;
    let frame = notices.get(key);
    if (!frame) {
      frame = buildCreditsNotice(opts.sender, id, bytes);
      if (notices.size < 100_000) notices.set(key, frame);
    }
    return frame;
  };

  const total = opts.warmup + opts.requests;
  const latencies = new Float64Array(opts.requests);
  const stallMs = opts.stallMs ?? 10_000;
  let sent = 0;
  let completed = 0;
  let measured = 0;
  let frames = 0;
  let closeFrames = 0;
  let closeHeaders = 0;
  let non200 = 0;
  let malformed = 0;
  let stalled = false;
  let receiveErrors = 0;
  let lastReceiveError = '';
  let stopSending = false;
  let lastReply = performance.now();
  let measureStart = 0;
  let measureEnd = 0;
  let cpuBefore = new Map<number, number>();
  let cpuAfter = new Map<number, number>();
  let threadsBefore = new Map<string, number>();
  let threadsAfter = new Map<string, number>();
  let genCpuBefore = process.cpuUsage();
  let genCpu = { user: 0, system: 0 };
  const rssSamples: RssSample[] = [];

  // Sends go through one queue: zeromq.js allows one send in flight.
  // A queued Buffer is a notice; a queued Conn is its next request.
  const queue: (Conn | Buffer)[] = [];
  let pumping = false;
  let requestsQueued = 0;
  const pump = async (): Promise<void> => {
    pumping = true;
    while (queue.length > 0 && !stopSending) {
      const batch = queue.splice(0, queue.length);
      for (const c of batch) {
        if (Buffer.isBuffer(c)) {
          await push.send(c);
          continue;
        }
        requestsQueued--;
        c.sentAt = performance.now();
        c.inFlight = true;
        sent++;
        const frame = c.first ? c.firstFrame : c.frame;
        c.first = false;
        await push.send(frame);
      }
    }
    pumping = false;
  };
  const notify = (frame: Buffer): void => {
    queue.push(frame);
    if (!pumping) void pump();
  };
  const request = (c: Conn): void => {
    if (stopSending || sent + requestsQueued >= total) return;
    requestsQueued++;
    queue.push(c);
    if (!pumping) void pump();
  };

  const startMeasuring = (): void => {
    const pids = processTree(rootPid);
    cpuBefore = treeCpu(pids);
    threadsBefore = threadCpu(pids);
    genCpuBefore = process.cpuUsage();
    measureStart = performance.now();
  };
  const stopMeasuring = (): void => {
    measureEnd = performance.now();
    cpuAfter = treeCpu([...cpuBefore.keys()]);
    threadsAfter = threadCpu([...cpuBefore.keys()]);
    genCpu = process.cpuUsage(genCpuBefore);
  };

  const onComplete = (c: Conn, now: number): void => {
    c.inFlight = false;
    frames += c.tracker.frames;
    if (c.tracker.status !== 200) non200++;
    if (c.tracker.close) closeHeaders++;
    c.tracker.reset();
    completed++;
    if (completed > opts.warmup) {
      latencies[measured++] = now - c.sentAt;
      if (measured === opts.requests) stopSending = true;
    } else if (completed === opts.warmup) {
      startMeasuring();
    }
    request(c);
  };

  const receiveLoop = async (): Promise<void> => {
    for (;;) {
      let msg: Buffer[];
      try {
        msg = await sub.receive();
      } catch (err) {
        if (sub.closed) return;
        // Counted and shown, never silent: a loop that stopped reading
        // would look like a handler that stopped answering.
        receiveErrors++;
        lastReceiveError = String(err);
        await new Promise((r) => setImmediate(r));
        continue;
      }
      const now = performance.now();
      lastReply = now;
      const frame = msg[0]!;
      const reply = parseReplyFrame(frame);
      if (reply === null || reply.extended) {
        if (reply === null) malformed++;
        continue;
      }
      if (reply.bodyAt === frame.length) {
        closeFrames++;
        continue;
      }
      for (const id of reply.ids) {
        const c = conns[id - 1];
        if (!c || !c.inFlight) {
          malformed++;
          continue;
        }
        if (opts.flowControl) notify(creditsNotice(id, frame.length - reply.bodyAt));
        const state = c.tracker.feed(frame.subarray(reply.bodyAt));
        if (state === 'complete') onComplete(c, now);
        else if (state === 'malformed') {
          malformed++;
          c.tracker.reset();
          onComplete(c, now);
        }
      }
    }
  };

  // Reading starts before the handler does: a SUB that nobody reads does
  // not pass its subscription on, and the handler would wait for it.
  const receiving = receiveLoop();
  emit({ event: 'bound' });
  rootPid = (await start()).rootPid;
  lastReply = performance.now();
  if (opts.warmup === 0) startMeasuring();
  for (const c of conns) request(c);

  // Watch the clock: the measured phase ends by count or by time, and a
  // silent handler ends the run.
  const deadline = performance.now() + (opts.seconds + 30) * 1000;
  await new Promise<void>((resolve) => {
    let lastSample = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      if (measureStart > 0 && now - measureStart > opts.seconds * 1000) stopSending = true;
      if (opts.sampleRss && measureStart > 0 && now - lastSample >= 1000) {
        lastSample = now;
        rssSamples.push({ requests: measured, rssMiB: processTree(rootPid).map(rssMiB) });
      }
      const inFlight = conns.some((c) => c.inFlight);
      if (now - lastReply > stallMs && (inFlight || completed < opts.warmup)) stalled = true;
      if ((stopSending && !inFlight) || stalled || now > deadline) {
        clearInterval(timer);
        resolve();
      }
    }, 20);
  });
  stopSending = true;
  if (measureStart === 0) startMeasuring();
  stopMeasuring();
  const unanswered = conns.filter((c) => c.inFlight).length;
  // After a stall the rate counts up to the last reply, not the wait.
  if (stalled && lastReply > measureStart) measureEnd = lastReply;

  const rssMiBByPid: Record<string, number> = {};
  for (const pid of processTree(rootPid)) rssMiBByPid[pid] = rssMiB(pid);
  sub.close();
  push.close();
  await receiving;

  const cpuSecondsByPid: Record<string, number> = {};
  let handlerCpu = 0;
  for (const [pid, before] of cpuBefore) {
    const used = Math.max(0, (cpuAfter.get(pid) ?? before) - before);
    cpuSecondsByPid[pid] = used;
    handlerCpu += used;
  }
  const cpuSecondsByThread: Record<string, number> = {};
  for (const [key, after] of threadsAfter) {
    const used = after - (threadsBefore.get(key) ?? 0);
    if (used >= handlerCpu * 0.01 && used > 0) cpuSecondsByThread[key] = used;
  }
  const seconds = (measureEnd - measureStart) / 1000;
  const lat = Array.from(latencies.subarray(0, measured)).sort((a, b) => a - b);
  return {
    event: 'result',
    requests: measured,
    seconds,
    requestsPerSecond: seconds > 0 ? measured / seconds : 0,
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? 0 },
    rootPid,
    cpuSecondsByPid,
    cpuSecondsByThread,
    handlerCpuMicrosPerRequest: measured > 0 ? (handlerCpu / measured) * 1e6 : 0,
    generatorCores: seconds > 0 ? (genCpu.user + genCpu.system) / 1e6 / seconds : 0,
    rssMiBByPid,
    framesPerResponse: completed > 0 ? frames / completed : 0,
    closeFrames,
    connectionCloseHeaders: closeHeaders,
    non200,
    malformed,
    stalled,
    unanswered,
    receiveErrors,
    lastReceiveError,
    rssSamples,
  };
}

const isMain = process.argv[1]?.endsWith('generator.ts') ?? false;
if (isMain) {
  const opts = JSON.parse(process.argv[2] ?? '{}') as GeneratorOptions;
  runGenerator(opts, readCommand).then((result) => {
    emit(result);
    process.exit(0);
  }, (err: unknown) => {
    emit({ event: 'error', message: String((err as Error).stack ?? err) });
    process.exit(1);
  });
}
