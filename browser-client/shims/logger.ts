/**
 * @libp2p/logger for the browser bundle: the page logs nothing of libp2p's
 * (its `debug` machinery stays out). Every logger is off and does nothing.
 */
interface Log {
  (formatter: unknown, ...args: unknown[]): void;
  enabled: boolean;
  error: Log;
  trace: Log;
  newScope(name: string): Log;
}

function silent(): Log {
  const log = (() => {}) as unknown as Log;
  log.enabled = false;
  log.error = log;
  log.trace = log;
  log.newScope = () => log;
  return log;
}

const off = silent();

export const logger = (_name: string): Log => off;
export const defaultLogger = (): { forComponent(name: string): Log } => ({ forComponent: () => off });
export const peerLogger = defaultLogger;
export const prefixLogger = defaultLogger;
export const disable = (): void => {};
export const enable = (_namespaces: string): void => {};
export const enabled = (_namespaces: string): boolean => false;
