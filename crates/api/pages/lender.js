// The loan officer's console: every figure comes from the lender routes of the JSON API,
// each query logged under the institution's key with the merchant's consent.
'use strict';

const L = { score: null, receipt: null, decision: null, batch: [], alerts: [], consents: [] };

function renderScore() {
  const s = L.score;
  if (!s) return;
  document.getElementById('result').hidden = false;
  YX.showScore(s);
  YX.card('log-index', L.receipt.index, L.receipt.index);
  YX.card('tree-size', L.receipt.head.tree_size, L.receipt.head.tree_size);
  YX.card('root-hash', L.receipt.head.root_hash, L.receipt.head.root_hash);
}

function renderDecision() {
  if (L.decision) YX.showDecision(L.decision);
}

function renderBatch() {
  const rows = L.batch.map((b) => YX.el('tr', { 'data-merchant': b.merchant_id },
    YX.cell(b.merchant_id, b.merchant_id),
    YX.cell(b.status, b.status),
    YX.cell(b.score ? String(b.score.score ?? '—') : '—', b.score ? b.score.score : '', 'num'),
    YX.cell(b.score ? b.score.grade || '—' : '—', b.score ? b.score.grade : ''),
    YX.cell(b.score ? YX.pct(b.score.pd) : '', b.score ? b.score.pd : '', 'num'),
    YX.cell(b.detail || '', b.detail || '')));
  YX.fill(document.querySelector('#portfolio-results tbody'), rows, 6);
}

function renderAlerts() {
  const rows = [];
  L.alerts.forEach((item) => item.alert.alerts.forEach((a) => rows.push(
    YX.el('tr', { 'data-merchant': item.alert.merchant_id, 'data-code': a.code },
      YX.cell(item.alert.merchant_id, item.alert.merchant_id),
      YX.cell(item.alert.grade || '—', item.alert.grade || ''),
      YX.cell(a.code, a.code),
      YX.cell(YX.lang === 'zh' ? a.text_zh : a.text_en, a.value)))));
  YX.fill(document.querySelector('#alerts tbody'), rows, 4);
}

function renderConsents() {
  const rows = L.consents.map((c) => YX.el('tr', { 'data-consent': c.id },
    YX.cell(c.merchant_id, c.merchant_id),
    YX.cell(YX.t('cpurpose.' + c.purpose), c.purpose),
    YX.cell(YX.time(c.granted_at), c.granted_at),
    YX.cell(YX.time(c.expires_at), c.expires_at),
    YX.cell(c.in_force ? YX.t('yes') : YX.t('no'), c.in_force)));
  YX.fill(document.querySelector('#consents tbody'), rows, 5);
}

function merchantId() { return document.getElementById('merchant').value.trim(); }

async function lookup() {
  const id = merchantId();
  const purpose = document.getElementById('purpose').value;
  YX.show('lookup-status', YX.t('loading'));
  try {
    const r = await YX.api('GET', `/v1/merchants/${encodeURIComponent(id)}/score?purpose=${purpose}`);
    L.score = r.json;
    L.receipt = { index: r.headers.get('yuanxin-log-index'), head: JSON.parse(r.headers.get('yuanxin-signed-head')) };
    L.decision = null;
    YX.clearDecision();
    renderScore();
    YX.show('lookup-status', '');
  } catch (e) {
    // Nothing of an earlier merchant stays on screen beside a refusal.
    L.score = null;
    L.receipt = null;
    L.decision = null;
    document.getElementById('result').hidden = true;
    YX.clearDecision();
    YX.fail('lookup-status', e);
  }
}

async function eligibility() {
  YX.show('eligibility-status', YX.t('loading'));
  try {
    L.decision = (await YX.api('POST', `/v1/merchants/${encodeURIComponent(merchantId())}/eligibility`, {
      amount: document.getElementById('amount').value.trim(),
      term_months: Number(document.getElementById('term').value),
      loan_purpose: document.getElementById('loan-purpose').value,
      purpose: document.getElementById('purpose').value,
    })).json;
    renderDecision();
    YX.show('eligibility-status', '');
  } catch (e) { YX.fail('eligibility-status', e); }
}

// Merchant ids from a CSV: the first column of each line, a header line skipped.
function idsOf(text) {
  return text.split(/\r?\n/).map((l) => l.split(',')[0].trim().replace(/^"|"$/g, ''))
    .filter((v) => /^M[0-9]{7}$/.test(v));
}

function csvOf(results) {
  const q = (v) => (/[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v);
  const lines = ['merchant_id,status,score,pd,grade,public_grade,as_of,log_index,detail'];
  results.forEach((b) => {
    const s = b.score || {};
    lines.push([b.merchant_id, b.status, s.score ?? '', s.pd ?? '', s.grade ?? '', s.public_grade ?? '',
      s.as_of ?? '', b.log_index ?? '', b.detail ?? ''].map((v) => q(String(v))).join(','));
  });
  return lines.join('\n') + '\n';
}

async function portfolio() {
  const file = document.getElementById('portfolio-file').files[0];
  if (!file) return;
  YX.show('portfolio-status', YX.t('loading'));
  try {
    const ids = idsOf(await file.text());
    const purpose = document.getElementById('portfolio-purpose').value;
    const results = [];
    // The service takes at most `batch_max` merchants a request (500 by default).
    for (let i = 0; i < ids.length && i < 10000; i += 500) {
      const r = await YX.api('POST', '/v1/portfolio/score', { purpose, merchants: ids.slice(i, i + 500) });
      results.push(...r.json.results);
    }
    L.batch = results;
    renderBatch();
    const a = document.getElementById('download');
    if (a.href.startsWith('blob:')) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(new Blob([csvOf(results)], { type: 'text/csv' }));
    a.download = 'portfolio-scores.csv';
    a.hidden = false;
    YX.show('portfolio-status', `${results.length}`);
  } catch (e) { YX.fail('portfolio-status', e); }
}

async function loadAlerts() {
  const purpose = document.getElementById('alerts-purpose').value;
  try {
    const items = await YX.all(`/v1/alerts?purpose=${purpose}&limit=500`, 2000);
    L.alerts = items;
    renderAlerts();
    YX.show('alerts-status', items.length ? '' : YX.t('l.noalerts'));
  } catch (e) { YX.fail('alerts-status', e); }
}

async function loadConsents() {
  L.consents = await YX.all('/v1/consents?limit=500', 5000);
  renderConsents();
}

document.addEventListener('DOMContentLoaded', async () => {
  if (!(await YX.start('lender'))) return;
  YX.renderers.push(renderScore, renderDecision, renderBatch, renderAlerts, renderConsents);
  document.getElementById('lookup').addEventListener('submit', (ev) => { ev.preventDefault(); lookup(); });
  document.getElementById('eligibility').addEventListener('submit', (ev) => { ev.preventDefault(); eligibility(); });
  document.getElementById('portfolio').addEventListener('submit', (ev) => { ev.preventDefault(); portfolio(); });
  document.getElementById('alerts-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadAlerts(); });
  try {
    await loadConsents();
    YX.show('status', '');
    document.body.dataset.ready = '1';
  } catch (e) { YX.fail('status', e); }
});
