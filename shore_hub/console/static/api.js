// The only module that talks HTTP: the hub's /api/v3 with the session's bearer token.

let token = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** The token every call carries, and what to do when the hub no longer accepts it. */
export function configure(bearer, unauthorized) {
  token = bearer;
  if (unauthorized) onUnauthorized = unauthorized;
}

function url(path, query = {}) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u;
}

async function failure(res) {
  let detail = `${res.status} ${res.statusText}`;
  try {
    detail = (await res.json()).detail || detail;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, detail);
}

/** JSON from the API; throws ApiError with the hub's `detail` on any refusal. */
export async function api(path, { method = 'GET', query, body, signal } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  await refused(res);
  return res.status === 204 ? null : res.json();
}

/** Throws ApiError for a refusal (after signing out when the token is no longer valid). */
async function refused(res) {
  if (res.status === 401) {
    onUnauthorized();
    throw await failure(res);
  }
  if (!res.ok) throw await failure(res);
}

/** A file from the API (a report's HTML or CSV) with the name the hub gives it: fetched
 * with the bearer token, which a plain link or `window.open` could not send. */
export async function file(path, { query, signal } = {}) {
  const res = await fetch(url(path, query), { headers: { Authorization: `Bearer ${token}` }, signal });
  await refused(res);
  const named = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
  return { blob: await res.blob(), name: named ? named[1] : null };
}

/** An API key, sent once, becomes a one-hour bearer token with the key's role and scope;
 * the key itself is never stored by the console. */
export async function exchangeKey(key) {
  const res = await fetch(url('/api/v3/auth/token'), {
    method: 'POST',
    headers: { 'X-API-Key': key },
  });
  if (!res.ok) throw await failure(res);
  return res.json();
}

let vocabulary = null;

/** Severities (lowest first), incident types and statuses as the API's own OpenAPI schema
 * enumerates them, so the console never keeps a second copy of the taxonomy. */
export async function terms() {
  if (!vocabulary) {
    vocabulary = fetch(url('/schema/openapi.json'))
      .then((res) => res.json())
      .then((schema) => {
        const enums = schema.components.schemas;
        return {
          severity: enums.Severity.enum,
          type: enums.IncidentType.enum,
          status: enums.IncidentStatus.enum,
        };
      });
  }
  return vocabulary;
}

/**
 * Follows the live feed (server-sent events of incident changes) until `stop()` is called,
 * reconnecting after a pause when the stream ends. EventSource cannot send an
 * Authorization header, and a token in the URL would end up in access logs, so the stream
 * is read with fetch instead. `onState` gets "live" or "reconnecting".
 */
export function follow(query, onIncident, onState) {
  const control = new AbortController();
  let retryMs = 1000;

  async function once() {
    const res = await fetch(url('/api/v3/live', query), {
      headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
      signal: control.signal,
    });
    if (res.status === 401) {
      onUnauthorized();
      return false;
    }
    if (!res.ok) throw await failure(res);
    onState('live');
    retryMs = 1000;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value.replaceAll('\r\n', '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (message.event === 'incident') onIncident(JSON.parse(message.data));
      }
    }
  }

  (async () => {
    while (!control.signal.aborted) {
      try {
        if (!(await once())) return;
      } catch {
        if (control.signal.aborted) return; // left the page
      }
      onState('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      retryMs = Math.min(retryMs * 2, 30000);
    }
  })();
  return () => control.abort();
}

function parse(block) {
  const message = { event: 'message', data: '' };
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue; // a comment: the hub's keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') message.event = value;
    else if (field === 'data') message.data += (message.data ? '\n' : '') + value;
  }
  return message;
}

/** Calls `load()` now and then `ms` after each call has settled, until the returned
 * function is called: for what has no live feed (remediation results, rollouts). */
export function repeat(load, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      await load();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
