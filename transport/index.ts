import { BeamError } from '../shared/errors.js';
import type { EngineName, WebRtcEngine } from './engine.js';

export * from './engine.js';

/** Loads an engine by name, lazily, so a platform without one can still use the other. */
export async function loadEngine(name: EngineName = 'node-datachannel'): Promise<WebRtcEngine> {
  try {
    if (name === 'werift') return (await import('./werift.js')).weriftEngine;
    return (await import('./ndc.js')).nodeDatachannelEngine;
  } catch (err) {
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      `the ${name} engine failed to load (${(err as Error).message}); try --engine ${name === 'werift' ? 'node-datachannel' : 'werift'}`,
      { cause: err },
    );
  }
}
