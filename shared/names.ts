/**
 * Share names: readable `adjective-noun-NNN`, always a valid DNS label, so a
 * share can live at `<name>.<domain>`.
 */
import { randomInt } from 'node:crypto';
import { MAX_NAME_LENGTH, MIN_NAME_LENGTH } from './constants.js';
import { BeamError } from './errors.js';

const ADJECTIVES = [
  'amber',
  'bold',
  'brave',
  'bright',
  'calm',
  'clever',
  'cosmic',
  'crisp',
  'dapper',
  'eager',
  'fancy',
  'fast',
  'fuzzy',
  'gentle',
  'giant',
  'glad',
  'golden',
  'happy',
  'jolly',
  'keen',
  'kind',
  'lively',
  'lucky',
  'mellow',
  'merry',
  'mighty',
  'misty',
  'neat',
  'nimble',
  'noble',
  'plucky',
  'polite',
  'proud',
  'quick',
  'quiet',
  'rapid',
  'rosy',
  'shiny',
  'silent',
  'silver',
  'sleek',
  'smart',
  'snappy',
  'solid',
  'sunny',
  'super',
  'swift',
  'tidy',
  'vivid',
  'warm',
  'wild',
  'witty',
  'zany',
  'zesty',
  'brisk',
  'cheery',
  'daring',
  'frosty',
  'hearty',
  'jazzy',
  'lunar',
  'polar',
  'rustic',
  'stellar',
] as const;

const NOUNS = [
  'otter',
  'falcon',
  'badger',
  'beaver',
  'bison',
  'cobra',
  'condor',
  'coyote',
  'crane',
  'dingo',
  'dolphin',
  'eagle',
  'ferret',
  'finch',
  'fox',
  'gecko',
  'heron',
  'ibis',
  'jaguar',
  'koala',
  'lemur',
  'lynx',
  'marmot',
  'moose',
  'newt',
  'ocelot',
  'orca',
  'osprey',
  'panda',
  'parrot',
  'pelican',
  'penguin',
  'puffin',
  'quail',
  'rabbit',
  'raven',
  'robin',
  'salmon',
  'seal',
  'shark',
  'sloth',
  'sparrow',
  'squid',
  'stork',
  'swan',
  'tapir',
  'tiger',
  'toucan',
  'turtle',
  'walrus',
  'weasel',
  'whale',
  'wombat',
  'yak',
  'zebra',
  'alpaca',
  'bobcat',
  'camel',
  'hippo',
  'kiwi',
  'llama',
  'magpie',
  'narwhal',
  'owl',
] as const;

/** Names a share may not take: they look like infrastructure. */
const RESERVED = new Set(['www', 'api', 'admin', 'beam', 'localhost', 'signal', 'socket', 'relay', 'gateway', 'metrics', 'status']);

const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

export function randomName(): string {
  const adjective = ADJECTIVES[randomInt(ADJECTIVES.length)];
  const noun = NOUNS[randomInt(NOUNS.length)];
  const number = String(randomInt(1000)).padStart(3, '0');
  return `${adjective}-${noun}-${number}`;
}

/** Returns the name, lower-cased, or throws BEAM_ERR_NAME_INVALID saying why. */
export function validateName(input: unknown): string {
  if (typeof input !== 'string') throw new BeamError('BEAM_ERR_NAME_INVALID', 'not a string');
  const name = input.toLowerCase();
  if (name.length < MIN_NAME_LENGTH || name.length > MAX_NAME_LENGTH) {
    throw new BeamError('BEAM_ERR_NAME_INVALID', `"${input.slice(0, 80)}" has ${input.length} characters`);
  }
  if (!LABEL.test(name)) throw new BeamError('BEAM_ERR_NAME_INVALID', `"${input}" is not a DNS label`);
  if (RESERVED.has(name)) throw new BeamError('BEAM_ERR_NAME_INVALID', `"${name}" is reserved`);
  return name;
}
