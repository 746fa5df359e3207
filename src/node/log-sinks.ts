/**
 * Where a process's log lines go: stderr, or a ZeroMQ collector (as uWSGI's
 * zeromq logger). The ZeroMQ sink never blocks serving; lines it cannot
 * deliver are dropped and counted, and the count reaches the master.
 */
import type { FleetConfig } from './config.js';
import { createZmqLogSink } from './zmq-log-sink.js';

/** A process's log output. */
export interface LogSinks {
  write(line: string): void;
  /** Lines dropped since the last takeDropped(). */
  dropped(): number;
  /** Returns and resets the dropped count. */
  takeDropped(): number;
  close(): Promise<void>;
}

/** Builds the sink the configuration asks for. */
export function createSinks(config: FleetConfig): LogSinks {
  if (config.logger.kind === 'stderr') {
    return {
      write: (line) => { process.stderr.write(line + '\n'); },
      dropped: () => 0,
      takeDropped: () => 0,
      close: async () => undefined,
    };
  }
  const sink = createZmqLogSink(config.logger.endpoint);
  let reported = 0;
  return {
    write: (line) => sink.write(line),
    dropped: () => sink.dropped - reported,
    takeDropped: () => {
      const n = sink.dropped - reported;
      reported = sink.dropped;
      return n;
    },
    close: () => sink.close(),
  };
}
