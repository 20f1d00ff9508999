/**
 * Admission: whether a request reaches the origin, and as what. One function
 * decides it from the request and the share's policy, on every path. It does
 * no I/O; only the rate limit's and the visitor count's state moves. The
 * origin forwarder (peer-agent/origin.ts) carries out the verdict.
 *
 * In order, as a request can fail several:
 *   framing   ambiguous body framing (peer-agent/framing.ts)   400 BEAM_ERR_BAD_FRAMING
 *   host      more than one Host (RFC 9112 section 3.2)        400 BEAM_ERR_BAD_REQUEST
 *   address   --allow-ip / --deny-ip                           403 BEAM_ERR_FORBIDDEN
 *   secret    --private: the link, cookie or header            401 BEAM_ERR_PRIVATE
 *   visitors  --max-visitors (gateway clients, by address)     503 BEAM_ERR_MAX_VISITORS
 *   rate      --rate-limit                                     429 BEAM_ERR_RATE_LIMITED
 *   auth      --auth basic credentials                         401 BEAM_ERR_UNAUTHORIZED
 *   policy    the share's policy rules, in order (peer-agent/policy.ts): the same
 *             refusals, 4xx/5xx BEAM_ERR_POLICY_DENIED, a redirect, header rules
 */
import { type BeamError, ERRORS, type ErrorCode } from '../shared/errors.js';
import { admit as admitSecret, type BasicCredentials, checkBasic, type IpRules, type RateLimit, stripSecret, type VisitorLimit } from './access.js';
import { type Framing, framedHeaders, requestFraming } from './framing.js';
import { type HeaderRules, requestHeaders } from './header-rules.js';
import type { HeaderPairs } from './inspect.js';
import { normalizedPath, type PolicyRule, ruleMatches } from './policy.js';
import type { WebhookVerifier } from './webhooks.js';

export interface AdmissionPolicy {
  ipRules?: IpRules | undefined;
  basicAuth?: BasicCredentials | undefined;
  rateLimit?: RateLimit | undefined;
  visitorLimit?: VisitorLimit | undefined;
  /** The share is private: its secret is cut from every request, checked or not. */
  privateShare: boolean;
  /** The share's policy (peer-agent/policy.ts), after the checks above. */
  rules?: readonly PolicyRule[] | undefined;
}

export interface AdmissionRequest {
  method: string;
  target: string;
  /** End-to-end headers, forwarding headers already dropped unless the gateway sent them. */
  headers: HeaderPairs;
  /** A body follows the head. */
  body: boolean;
  upgrade: boolean;
  /** From the server's own gateway: its X-Forwarded-For names the visitor. */
  trustForwarded: boolean;
  /** The visitor's address as the gateway saw it (trustForwarded), for IP rules and per-client limits. */
  forwardedFor?: string | undefined;
  /** A peer-to-peer visitor's own address. */
  visitorAddress?: string | undefined;
  /** Who --rate-limit counts a peer-to-peer request against (its session). */
  visitorKey?: string | undefined;
  /** The secret this request must prove (gateway and browser visitors); others proved it in the handshake. */
  secret?: string | undefined;
}

/** What Beam answers instead of the origin: the code, and the response a client gets (or only an error head, for the gateway to render). */
export interface Refusal {
  code: ErrorCode;
  response?: { status: number; statusText: string; headers: HeaderPairs; body: string };
  /** Not a refusal but the share's own answer (a policy's redirect): no beam-error, and the inspector shows it as a response. */
  answer?: true;
}

export type Admission =
  | {
      ok: true;
      target: string;
      headers: HeaderPairs;
      framing: Framing;
      setCookie: string | undefined;
      /** Response header rules of the policy rules that matched, in order. */
      responseRules: HeaderRules[];
      /** Webhook signatures the policy rules that matched ask for: the body must carry each. */
      webhooks: WebhookVerifier[];
    }
  | { ok: false; refusal: Refusal };

/** A refusal with a body of its own: the registry's message, and what only this occurrence knows. */
function refusal(code: ErrorCode, statusText: string, headers: HeaderPairs = [], detail?: string): Refusal {
  const body = `${ERRORS[code].message}${detail ? ` (${detail})` : ''}\n`;
  return { code, response: { status: ERRORS[code].status, statusText, headers: [...headers, ['Content-Type', 'text/plain; charset=utf-8']], body } };
}

const refuse = (r: Refusal): Admission => ({ ok: false, refusal: r });

export async function admit(request: AdmissionRequest, policy: AdmissionPolicy): Promise<Admission> {
  let { target, headers } = request;
  // The framing of the origin hop is the agent's: an ambiguous head is refused before anything else.
  let framing: Framing;
  try {
    framing = requestFraming(headers, request.body, request.upgrade);
  } catch (err) {
    return refuse(refusal('BEAM_ERR_BAD_FRAMING', 'Bad Request', [], (err as BeamError).detail));
  }
  headers = framedHeaders(headers, framing);
  if (headers.filter(([k]) => k.toLowerCase() === 'host').length > 1)
    return refuse(refusal('BEAM_ERR_BAD_REQUEST', 'Bad Request', [], 'more than one Host header'));
  const client = request.trustForwarded ? request.forwardedFor : request.visitorAddress;
  if (policy.ipRules && !policy.ipRules.allows(client)) return refuse({ code: 'BEAM_ERR_FORBIDDEN' });
  let setCookie: string | undefined;
  if (request.secret !== undefined) {
    const proto = headers.find(([k]) => k.toLowerCase() === 'x-forwarded-proto')?.[1];
    const admitted = admitSecret(target, headers, request.secret, proto === 'https');
    if (!admitted.ok) return refuse({ code: 'BEAM_ERR_PRIVATE' });
    ({ target, headers, setCookie } = admitted);
  } else if (policy.privateShare) {
    ({ target, headers } = stripSecret(target, headers));
  }
  // Peer-to-peer visitors were counted when their session came; gateway visitors are, by address, here.
  const limit = policy.visitorLimit;
  if (limit && request.trustForwarded && !limit.enter(`ip:${request.forwardedFor ?? '?'}`)) {
    return refuse(refusal('BEAM_ERR_MAX_VISITORS', 'Service Unavailable', [['Retry-After', String(limit.retryAfterS)]], `${limit.max} at once`));
  }
  if (policy.rateLimit) {
    // Per visitor: a gateway client by its address, a peer-to-peer visitor by its session.
    const key = request.trustForwarded ? `ip:${request.forwardedFor ?? '?'}` : (request.visitorKey ?? 'peer');
    const waitMs = await policy.rateLimit.take(key);
    if (waitMs > 0) return refuse(refusal('BEAM_ERR_RATE_LIMITED', 'Too Many Requests', [['Retry-After', String(Math.ceil(waitMs / 1000))]]));
  }
  if (policy.basicAuth) {
    const checked = checkBasic(headers, policy.basicAuth);
    if (!checked.ok) return refuse(refusal('BEAM_ERR_UNAUTHORIZED', 'Unauthorized', [['WWW-Authenticate', 'Basic realm="beam", charset="UTF-8"']]));
    headers = checked.headers;
  }
  const responseRules: HeaderRules[] = [];
  const webhooks: WebhookVerifier[] = [];
  for (const rule of policy.rules ?? []) {
    if (!ruleMatches(rule, request.method, target)) continue;
    const action = rule.action;
    switch (action.kind) {
      case 'ip':
        if (!action.rules.allows(client)) return refuse({ code: 'BEAM_ERR_FORBIDDEN' });
        break;
      case 'auth': {
        const checked = checkBasic(headers, action.credentials);
        if (!checked.ok) return refuse(refusal('BEAM_ERR_UNAUTHORIZED', 'Unauthorized', [['WWW-Authenticate', 'Basic realm="beam", charset="UTF-8"']]));
        headers = checked.headers;
        break;
      }
      case 'rate': {
        const key = request.trustForwarded ? `ip:${request.forwardedFor ?? '?'}` : (request.visitorKey ?? 'peer');
        const waitMs = await action.limit.take(key);
        if (waitMs > 0) return refuse(refusal('BEAM_ERR_RATE_LIMITED', 'Too Many Requests', [['Retry-After', String(Math.ceil(waitMs / 1000))]]));
        break;
      }
      case 'deny': {
        const denied = refusal('BEAM_ERR_POLICY_DENIED', 'Denied', [], rule.label);
        return refuse({ ...denied, response: { ...(denied.response as NonNullable<Refusal['response']>), status: action.status, statusText: 'Denied' } });
      }
      case 'redirect':
        return refuse({
          code: 'BEAM_ERR_POLICY_DENIED',
          answer: true,
          response: {
            status: action.status,
            statusText: 'Redirect',
            headers: [
              ['Location', action.to],
              ['Content-Type', 'text/plain; charset=utf-8'],
            ],
            body: `${action.to}\n`,
          },
        });
      case 'webhook':
        webhooks.push(action.verifier);
        break;
      case 'headers': {
        const context = { clientIp: client, path: normalizedPath(target) };
        headers = requestHeaders(action.rules, headers, context);
        if (action.rules.responseAdd.length > 0 || action.rules.responseRemove.size > 0) responseRules.push(action.rules);
        break;
      }
    }
  }
  return { ok: true, target, headers, framing, setCookie, responseRules, webhooks };
}
