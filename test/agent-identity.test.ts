/**
 * The agent's identity at start (transport/agent-identity.ts): the peer ID
 * from its file beside the key, the key loaded later and held to it, and the
 * file rewritten whenever the key is newer.
 */
import { mkdtemp, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAgentIdentity } from '../transport/agent-identity.js';
import { PEER_ID_FILE } from '../transport/config-dir.js';
import { ephemeralIdentity } from '../transport/identity.js';

describe('loadAgentIdentity', () => {
  it('makes the key on first use and keeps its peer ID beside it, mode 0600', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-id-'));
    const first = await loadAgentIdentity(dir);
    expect(first.peerIdText).toMatch(/^12D3KooW/);
    expect((await first.load()).peerId.toString()).toBe(first.peerIdText);
    expect((await readFile(path.join(dir, PEER_ID_FILE), 'utf8')).trim()).toBe(first.peerIdText);
    expect(((await stat(path.join(dir, PEER_ID_FILE))).mode & 0o777).toString(8)).toBe('600');
    const again = await loadAgentIdentity(dir);
    expect(again.peerIdText).toBe(first.peerIdText);
    expect((await again.load()).peerId.toString()).toBe(first.peerIdText);
  });

  it('names the peer from its file at start, and refuses a key that turns out not to match it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-id-'));
    await loadAgentIdentity(dir);
    const other = (await ephemeralIdentity()).peerId.toString();
    await writeFile(path.join(dir, PEER_ID_FILE), `${other}\n`);
    const wrong = await loadAgentIdentity(dir);
    expect(wrong.peerIdText).toBe(other);
    await expect(wrong.load()).rejects.toMatchObject({ code: 'BEAM_ERR_IDENTITY' });
  });

  it("a key newer than the file wins: the peer ID is the key's, and the file is written again", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-id-'));
    const real = await loadAgentIdentity(dir);
    const other = (await ephemeralIdentity()).peerId.toString();
    await writeFile(path.join(dir, PEER_ID_FILE), `${other}\n`);
    const past = new Date(Date.now() - 60_000);
    await utimes(path.join(dir, PEER_ID_FILE), past, past);
    const fixed = await loadAgentIdentity(dir);
    expect(fixed.peerIdText).toBe(real.peerIdText);
    expect((await readFile(path.join(dir, PEER_ID_FILE), 'utf8')).trim()).toBe(real.peerIdText);
  });
});
