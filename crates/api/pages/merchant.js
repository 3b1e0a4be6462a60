// The merchant's page: everything shown comes from the merchant routes of the JSON API
// (/v1/me/...), for the signed-in merchant only.
'use strict';

const M = { score: null, history: null, decision: null, queries: [], queriesNext: null,
  consents: [], disputes: [], lenders: [] };

function renderScore() {
  if (M.score) YX.showScore(M.score);
}

// The score history as a small line chart, with its values as the chart's text alternative.
function renderChart() {
  const box = document.getElementById('chart');
  const pts = (M.history ? M.history.points : []).filter((p) => p.score !== null);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  const W = 600; const H = 200; const L = 40; const R = 10; const T = 12; const B = 28;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const label = YX.t('m.history.alt') + pts.map((p) => `${p.as_of} ${p.score}`).join(YX.lang === 'zh' ? '；' : '; ');
  svg.setAttribute('aria-label', label);
  const title = document.createElementNS(ns, 'title');
  title.textContent = label;
  svg.append(title);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  if (pts.length) {
    const scores = pts.map((p) => p.score);
    let lo = Math.min(...scores) - 10; let hi = Math.max(...scores) + 10;
    if (hi - lo < 40) { const mid = (hi + lo) / 2; lo = mid - 20; hi = mid + 20; }
    const x = (i) => L + (pts.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (pts.length - 1));
    const y = (v) => T + ((hi - v) * (H - T - B)) / (hi - lo);
    add('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B });
    add('text', { x: 2, y: y(hi) + 4 }, String(Math.round(hi)));
    add('text', { x: 2, y: y(lo) }, String(Math.round(lo)));
    add('polyline', { class: 'line', points: pts.map((p, i) => `${x(i)},${y(p.score)}`).join(' ') });
    pts.forEach((p, i) => {
      add('circle', { class: 'dot', cx: x(i), cy: y(p.score), r: 3, 'data-as-of': p.as_of, 'data-score': p.score });
      if (i % 2 === pts.length % 2 || i === pts.length - 1) {
        add('text', { x: x(i) - 18, y: H - 8 }, p.as_of.slice(2, 7));
      }
    });
  }
  box.replaceChildren(svg);
}

function renderDecision() {
  const d = M.decision;
  if (!d) return;
  YX.showDecision(d);
  const misses = d.near_misses.map((n) => YX.el('li', { 'data-product': n.product },
    YX.lang === 'zh'
      ? `${n.institution_zh} · ${n.name_zh}：${n.failing_zh.join('；')}`
      : `${n.institution} · ${n.name}: ${n.failing.join('; ')}`));
  document.getElementById('misses').replaceChildren(...(misses.length ? misses : [YX.el('li', { class: 'muted' }, YX.t('none'))]));
  const hints = d.hints.map((h) => YX.el('li', { 'data-feature': h.feature, 'data-points': h.points },
    YX.lang === 'zh' ? h.text_zh : h.text_en));
  document.getElementById('hints').replaceChildren(...(hints.length ? hints : [YX.el('li', { class: 'muted' }, YX.t('m.hints.none'))]));
}

function renderQueries() {
  const rows = M.queries.map((q) => YX.el('tr', { 'data-index': q.index },
    YX.cell(YX.time(q.at), q.at),
    YX.cell(`${q.institution.name} (${q.institution.code})`, q.institution.code),
    YX.cell(YX.t('action.' + q.action), q.action),
    YX.cell(YX.t('cpurpose.' + q.purpose), q.purpose)));
  YX.fill(document.querySelector('#queries tbody'), rows, 4);
  document.getElementById('more-queries').hidden = !M.queriesNext;
}

function renderConsents() {
  const rows = M.consents.map((c) => {
    const revoke = c.in_force
      ? YX.el('button', { type: 'button', class: 'link', 'data-consent': c.id,
        'aria-label': `${YX.t('m.revoke')} ${c.lender.name} ${YX.t('cpurpose.' + c.purpose)}` }, YX.t('m.revoke'))
      : '';
    if (revoke) revoke.addEventListener('click', () => revokeConsent(c.id));
    return YX.el('tr', { 'data-consent': c.id },
      YX.cell(`${c.lender.name} (${c.lender.code})`, c.lender.code),
      YX.cell(YX.t('cpurpose.' + c.purpose), c.purpose),
      YX.cell(YX.time(c.granted_at), c.granted_at),
      YX.cell(YX.time(c.expires_at), c.expires_at),
      YX.cell(c.in_force ? YX.t('yes') : YX.t('no'), c.in_force),
      YX.el('td', {}, revoke));
  });
  YX.fill(document.querySelector('#consents tbody'), rows, 6);
  const sel = document.getElementById('grant-lender');
  const chosen = sel.value;
  sel.replaceChildren(...M.lenders.map((l) => YX.el('option', { value: l.code }, `${l.name} (${l.code})`)));
  if (chosen) sel.value = chosen;
}

function renderDisputes() {
  const rows = M.disputes.map((d) => {
    const status = d.answer ? 'm.answered' : d.overdue ? 'm.overdue' : 'm.pending';
    return YX.el('tr', { 'data-dispute': d.id },
      YX.cell(d.subject, d.subject),
      YX.cell(YX.time(d.opened_at), d.opened_at),
      YX.cell(YX.time(d.deadline), d.deadline),
      YX.cell(YX.t(status), status.slice(2)),
      YX.cell(d.answer || '—', d.answer || ''));
  });
  YX.fill(document.querySelector('#disputes tbody'), rows, 5);
}

async function loadConsents() {
  M.consents = await YX.all('/v1/me/consents?limit=500', 2000);
  M.lenders = await YX.all('/v1/institutions?limit=500', 2000);
  renderConsents();
}

async function loadDisputes() {
  M.disputes = await YX.all('/v1/me/disputes?limit=500', 2000);
  renderDisputes();
}

async function loadQueries(more) {
  const path = '/v1/me/queries?limit=20' + (more && M.queriesNext ? '&cursor=' + encodeURIComponent(M.queriesNext) : '');
  const r = await YX.api('GET', path);
  M.queries = more ? M.queries.concat(r.json.items) : r.json.items;
  M.queriesNext = r.json.next_cursor;
  renderQueries();
}

async function borrow() {
  const q = new URLSearchParams({
    amount: document.getElementById('amount').value.trim(),
    term_months: document.getElementById('term').value.trim(),
    loan_purpose: document.getElementById('loan-purpose').value,
  });
  YX.show('borrow-status', YX.t('loading'));
  try {
    M.decision = (await YX.api('GET', '/v1/me/eligibility?' + q)).json;
    renderDecision();
    YX.show('borrow-status', '');
  } catch (e) { YX.fail('borrow-status', e); }
}

async function revokeConsent(id) {
  try {
    await YX.api('DELETE', '/v1/me/consents/' + id);
    await loadConsents();
    YX.show('consent-status', '');
  } catch (e) { YX.fail('consent-status', e); }
}

document.addEventListener('DOMContentLoaded', async () => {
  if (!(await YX.start('merchant'))) return;
  YX.renderers.push(renderScore, renderChart, renderDecision, renderQueries, renderConsents, renderDisputes);
  document.getElementById('borrow').addEventListener('submit', (ev) => { ev.preventDefault(); borrow(); });
  document.getElementById('more-queries').addEventListener('click', () => loadQueries(true).catch((e) => YX.fail('status', e)));
  document.getElementById('grant').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await YX.api('POST', '/v1/me/consents', {
        lender: document.getElementById('grant-lender').value,
        purpose: document.getElementById('grant-purpose').value,
        days: Number(document.getElementById('grant-days').value),
      });
      await loadConsents();
      YX.show('consent-status', '');
    } catch (e) { YX.fail('consent-status', e); }
  });
  document.getElementById('dispute').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await YX.api('POST', '/v1/me/disputes', {
        subject: document.getElementById('dispute-subject').value.trim(),
        detail: document.getElementById('dispute-detail').value.trim(),
      });
      ev.target.reset();
      await loadDisputes();
      YX.show('dispute-status', '');
    } catch (e) { YX.fail('dispute-status', e); }
  });
  YX.show('status', YX.t('loading'));
  try {
    M.score = (await YX.api('GET', '/v1/me/score')).json;
    renderScore();
    M.history = (await YX.api('GET', '/v1/me/history')).json;
    renderChart();
    await Promise.all([borrow(), loadQueries(false), loadConsents(), loadDisputes()]);
    YX.show('status', '');
    document.body.dataset.ready = '1';
  } catch (e) { YX.fail('status', e); }
});
