/**
 * Node globals the shared code uses, for the browser bundle (esbuild
 * `inject`): Buffer, process.nextTick, setImmediate and clearImmediate, and timers with
 * unref()/ref(), which browsers' numeric timer ids lack.
 */
import { Buffer } from 'buffer';

export { Buffer };

export const process = {
  env: {} as Record<string, string | undefined>,
  version: 'v20.0.0',
  versions: {},
  platform: 'browser',
  browser: true,
  nextTick: (fn: (...args: unknown[]) => void, ...args: unknown[]): void => queueMicrotask(() => fn(...args)),
};

/** A timer handle that also answers Node's unref(), ref() and hasRef(). */
class Timer {
  readonly id: number;
  constructor(id: number) {
    this.id = id;
  }
  unref(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
  [Symbol.toPrimitive](): number {
    return this.id;
  }
}

const idOf = (t: unknown): number | undefined => (t instanceof Timer ? t.id : (t as number | undefined));
const native = {
  setTimeout: globalThis.setTimeout.bind(globalThis),
  setInterval: globalThis.setInterval.bind(globalThis),
  clearTimeout: globalThis.clearTimeout.bind(globalThis),
  clearInterval: globalThis.clearInterval.bind(globalThis),
};

function setTimeoutShim(fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]): Timer {
  return new Timer(native.setTimeout(fn, ms, ...args) as unknown as number);
}
function setIntervalShim(fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]): Timer {
  return new Timer(native.setInterval(fn, ms, ...args) as unknown as number);
}
function clearTimeoutShim(t: unknown): void {
  native.clearTimeout(idOf(t));
}
function clearIntervalShim(t: unknown): void {
  native.clearInterval(idOf(t));
}
function setImmediateShim(fn: (...args: unknown[]) => void, ...args: unknown[]): Timer {
  return new Timer(native.setTimeout(fn, 0, ...args) as unknown as number);
}
/** Browsers have no clearImmediate: the multiplexer's probe cancels its pending verdict with it. */
function clearImmediateShim(t: unknown): void {
  native.clearTimeout(idOf(t));
}

export {
  clearImmediateShim as clearImmediate,
  clearIntervalShim as clearInterval,
  clearTimeoutShim as clearTimeout,
  setImmediateShim as setImmediate,
  setIntervalShim as setInterval,
  setTimeoutShim as setTimeout,
};
