// The agent's logger: pino, JSON lines on stdout (or a destination a test gives).
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino({ level: opts.level ?? process.env.SOCKMESH_LOG_LEVEL ?? 'info', base: { name: 'sockmesh' } }, opts.destination ?? pino.destination(1));
}
