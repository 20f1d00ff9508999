/**
 * Webhook signatures as the senders make them: GitHub's (@octokit/webhooks-methods),
 * Stripe's (stripe's own test-header helper), Standard Webhooks' (standardwebhooks),
 * Slack's (its documented v0 scheme; Slack ships no signing helper), and a
 * generic HMAC. Each: accepted as signed, refused when the body, the secret
 * or the time is wrong.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { parseWebhookVerifier, webhookProblem } from '../peer-agent/webhooks.js';
import { WEBHOOK_TOLERANCE_S } from '../shared/constants.js';
import { errorCodeOf } from '../shared/errors.js';

const body = Buffer.from(JSON.stringify({ action: 'opened', number: 42, text: 'ünïcödé' }));
const tampered = Buffer.from(body.toString().replace('42', '43'));
const now = Math.floor(Date.now() / 1000);

describe('webhook signatures', () => {
  it('github: X-Hub-Signature-256 from @octokit/webhooks-methods', async () => {
    const v = parseWebhookVerifier('github', 'gh-secret', undefined);
    const headers: Array<[string, string]> = [['X-Hub-Signature-256', await githubSign('gh-secret', body.toString())]];
    expect(webhookProblem(v, headers, body)).toBeUndefined();
    expect(webhookProblem(v, headers, tampered)).toMatch(/does not match/);
    expect(webhookProblem(parseWebhookVerifier('github', 'other', undefined), headers, body)).toMatch(/does not match/);
    expect(webhookProblem(v, [], body)).toMatch(/no X-Hub-Signature-256/);
    // Two signature headers are not one signature.
    expect(webhookProblem(v, [...headers, ...headers], body)).toBeDefined();
  });

  it("stripe: Stripe-Signature from stripe's generateTestHeaderString, within the tolerance only", () => {
    const stripe = new Stripe('sk_test_beam');
    const secret = 'whsec_test_beam';
    const v = parseWebhookVerifier('stripe', secret, undefined);
    const header = stripe.webhooks.generateTestHeaderString({ payload: body.toString(), secret, timestamp: now });
    expect(webhookProblem(v, [['Stripe-Signature', header]], body, now)).toBeUndefined();
    expect(webhookProblem(v, [['Stripe-Signature', header]], tampered, now)).toMatch(/no v1 signature/);
    const old = stripe.webhooks.generateTestHeaderString({ payload: body.toString(), secret, timestamp: now - WEBHOOK_TOLERANCE_S - 1 });
    expect(webhookProblem(v, [['Stripe-Signature', old]], body, now)).toMatch(/more than 300 s away/);
  });

  it('standard webhooks: webhook-signature from standardwebhooks', () => {
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const v = parseWebhookVerifier('standard', secret, undefined);
    const signer = new StandardWebhook(secret);
    const at = new Date(now * 1000);
    const headers: Array<[string, string]> = [
      ['webhook-id', 'msg_2Lh9'],
      ['webhook-timestamp', String(now)],
      ['webhook-signature', signer.sign('msg_2Lh9', at, body.toString())],
    ];
    expect(webhookProblem(v, headers, body, now)).toBeUndefined();
    expect(webhookProblem(v, headers, tampered, now)).toMatch(/no v1 signature/);
    expect(webhookProblem(v, headers, body, now + WEBHOOK_TOLERANCE_S + 1)).toMatch(/away/);
    // A different message id with the same signature is not signed.
    expect(webhookProblem(v, [['webhook-id', 'msg_other'], ...headers.slice(1)], body, now)).toBeDefined();
  });

  it("slack: X-Slack-Signature over v0:<timestamp>:<body>, Slack's documented scheme", () => {
    const secret = '8f742231b10e8888abcd99yyyzzz85a5';
    const v = parseWebhookVerifier('slack', secret, undefined);
    const sig = `v0=${createHmac('sha256', secret).update(`v0:${now}:`).update(body).digest('hex')}`;
    const headers: Array<[string, string]> = [
      ['X-Slack-Signature', sig],
      ['X-Slack-Request-Timestamp', String(now)],
    ];
    expect(webhookProblem(v, headers, body, now)).toBeUndefined();
    expect(webhookProblem(v, headers, tampered, now)).toMatch(/does not match/);
    expect(webhookProblem(v, headers, body, now + 301)).toMatch(/away/);
  });

  it('hmac: a named header, hex or base64, with or without sha256=', () => {
    const v = parseWebhookVerifier('hmac', 'k', 'X-Signature');
    const mac = createHmac('sha256', 'k').update(body).digest();
    for (const value of [mac.toString('hex'), `sha256=${mac.toString('hex')}`, mac.toString('base64')]) {
      expect(webhookProblem(v, [['x-signature', value]], body), value).toBeUndefined();
      expect(webhookProblem(v, [['x-signature', value]], tampered), value).toMatch(/does not match/);
    }
    expect(webhookProblem(v, [['x-signature', 'zz']], body)).toMatch(/does not match/);
  });

  it('flags that make no sense are BEAM_ERR_BAD_OPTION', () => {
    for (const [provider, secret, header] of [
      ['gitlab', 's', undefined],
      ['github', undefined, undefined],
      ['hmac', 's', undefined],
      ['github', 's', 'X-Sig'],
      ['standard', 'not-base64!', undefined],
    ] as const) {
      let code: string | undefined;
      try {
        parseWebhookVerifier(provider, secret, header);
      } catch (err) {
        code = errorCodeOf(err);
      }
      expect(code, `${provider} ${secret} ${header}`).toBe('BEAM_ERR_BAD_OPTION');
    }
  });
});
