// The inspector page. Everything it shows comes from visitors, so it is only
// ever set as text (textContent), never parsed as HTML.

const $ = (id) => document.getElementById(id);
const rows = new Map(); // id -> { summary, tr }
let selected;
let filterText = '';

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function formatTime(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function statusText(s) {
  if (s.status !== undefined) return String(s.status) + (s.error ? ` ${s.error.replace('BEAM_ERR_', '')}` : '');
  if (s.state === 'failed') return s.error ?? 'failed';
  return '…';
}

function cell(tr, text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  td.title = text;
  tr.append(td);
  return td;
}

function matches(s) {
  if (!filterText) return true;
  const hay = `${s.method} ${s.target} ${s.status ?? ''} ${s.error ?? ''} ${s.visitor} ${s.path}`.toLowerCase();
  return filterText.split(/\s+/).every((word) => hay.includes(word));
}

function render(s) {
  let row = rows.get(s.id);
  const tr = document.createElement('tr');
  tr.dataset.id = s.id;
  tr.dataset.state = s.state;
  cell(tr, formatTime(s.startedAt));
  cell(tr, s.method);
  cell(tr, s.target);
  const bad = s.state === 'failed' || (s.status ?? 0) >= 400;
  cell(tr, statusText(s), s.state === 'pending' ? 'pending' : bad ? 'status-bad' : 'status-ok').dataset.col = 'status';
  cell(tr, s.durationMs === undefined ? '' : `${s.durationMs} ms`);
  cell(tr, formatSize(s.responseBytes));
  cell(tr, s.visitor);
  const via = cell(tr, '');
  const badge = document.createElement('span');
  badge.className = 'via';
  badge.textContent = s.path;
  via.append(badge);
  tr.addEventListener('click', () => select(s.id));
  if (s.id === selected) tr.classList.add('selected');
  tr.hidden = !matches(s);
  const body = $('requests').tBodies[0];
  if (row) {
    row.tr.replaceWith(tr);
  } else {
    body.prepend(tr); // newest first
  }
  rows.set(s.id, { summary: s, tr });
  if (s.id === selected && s.state !== 'pending') void showDetail(s.id);
  updateCount();
}

function updateCount() {
  const shown = [...rows.values()].filter((r) => !r.tr.hidden).length;
  $('count').textContent = rows.size === shown ? `${rows.size} requests` : `${shown} of ${rows.size} requests`;
  $('empty').hidden = rows.size > 0;
}

function headerTable(table, pairs) {
  table.replaceChildren();
  for (const [name, value] of pairs) {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = value;
  }
}

function bodyText(b) {
  if (b.kind === 'empty') return '';
  const note = b.truncated ? `\n\n… ${formatSize(b.size)} in all; the inspector keeps the start only` : '';
  return b.text + note;
}

let detail;
async function showDetail(id) {
  const res = await fetch(`/api/requests/${id}`);
  if (!res.ok) return;
  detail = await res.json();
  if (detail.id !== selected) return;
  $('detail').hidden = false;
  $('detail-title').textContent = `${detail.method} ${detail.target}`;
  const parts = [detail.path, detail.visitor, detail.startedAt];
  if (detail.durationMs !== undefined) parts.push(`${detail.durationMs} ms`);
  if (detail.replayOf) parts.push(`replay of #${detail.replayOf}`);
  if (detail.error) parts.push(detail.error);
  $('detail-meta').textContent = parts.join(' · ');
  headerTable($('req-headers'), detail.requestHeaders);
  $('req-body').textContent = bodyText(detail.requestBody);
  $('req-body').dataset.kind = detail.requestBody.kind;
  $('res-status').textContent = detail.status === undefined ? '' : `${detail.status} ${detail.statusText ?? ''}`;
  headerTable($('res-headers'), detail.responseHeaders);
  $('res-body').textContent = bodyText(detail.responseBody);
  $('res-body').dataset.kind = detail.responseBody.kind;
}

function select(id) {
  selected = id;
  for (const { tr } of rows.values()) tr.classList.toggle('selected', tr.dataset.id === id);
  $('editor').hidden = true;
  $('replay-status').textContent = '';
  void showDetail(id);
}

async function replay(edits) {
  $('replay-status').textContent = 'Replaying…';
  const res = await fetch(`/api/requests/${selected}/replay`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(edits ?? {}),
  });
  const answer = await res.json();
  if (!res.ok) {
    $('replay-status').textContent = `${answer.error.code}: ${answer.error.message}`;
    return;
  }
  select(answer.id);
  $('replay-status').textContent = 'Replayed.';
}

function openEditor() {
  if (!detail) return;
  $('edit-method').value = detail.method;
  $('edit-target').value = detail.target;
  $('edit-headers').value = detail.requestHeaders
    .filter(([name]) => name.toLowerCase() !== 'content-length')
    .map(([name, value]) => `${name}: ${value}`)
    .join('\n');
  $('edit-body').value = detail.requestBody.kind === 'binary' ? '' : detail.requestBody.text;
  $('editor').hidden = false;
}

function sendEdited(event) {
  event.preventDefault();
  const headers = $('edit-headers')
    .value.split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const colon = line.indexOf(':');
      return colon < 0 ? [line, ''] : [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
    });
  void replay({ method: $('edit-method').value.trim().toUpperCase(), target: $('edit-target').value.trim(), headers, body: $('edit-body').value });
}

async function loadAll() {
  const res = await fetch('/api/requests');
  const { requests } = await res.json();
  $('requests').tBodies[0].replaceChildren();
  rows.clear();
  for (const s of requests) render(s);
  updateCount();
}

function watch() {
  const events = new EventSource('/api/events');
  events.addEventListener('open', () => {
    $('live').textContent = 'live';
    $('live').classList.add('on');
    // Whatever happened while the stream was down.
    void loadAll();
  });
  events.addEventListener('error', () => {
    $('live').textContent = 'reconnecting…';
    $('live').classList.remove('on');
  });
  events.addEventListener('exchange', (e) => render(JSON.parse(e.data)));
  events.addEventListener('cleared', () => {
    rows.clear();
    $('requests').tBodies[0].replaceChildren();
    $('detail').hidden = true;
    selected = undefined;
    updateCount();
  });
}

async function start() {
  const info = await (await fetch('/api/info')).json();
  $('share').textContent = info.url ? `${info.url} → ${info.origin}` : info.origin;
  $('filter').addEventListener('input', () => {
    filterText = $('filter').value.trim().toLowerCase();
    for (const { summary, tr } of rows.values()) tr.hidden = !matches(summary);
    updateCount();
  });
  $('clear').addEventListener('click', () => void fetch('/api/requests', { method: 'DELETE' }));
  $('replay').addEventListener('click', () => void replay());
  $('edit').addEventListener('click', openEditor);
  $('cancel').addEventListener('click', () => ($('editor').hidden = true));
  $('editor').addEventListener('submit', sendEdited);
  updateCount();
  watch();
}

void start();
