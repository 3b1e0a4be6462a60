// The regulators' dashboard: the month's figures and watch list from the regulator routes
// of the JSON API (limited by the service to a district regulator's district), each read
// logged. The page only adds up what the API returns, for the headline cards.
'use strict';

const R = { report: null, watch: [], cursor: null };

const DISTRICTS_ZH = {
  FUTIAN: '福田区', LUOHU: '罗湖区', NANSHAN: '南山区', YANTIAN: '盐田区', BAOAN: '宝安区',
  LONGGANG: '龙岗区', LONGHUA: '龙华区', PINGSHAN: '坪山区', GUANGMING: '光明区',
  DAPENG: '大鹏新区', SHENSHAN: '深汕特别合作区',
};
const INDUSTRIES_ZH = {
  EDU_SUBJECT: '学科类校外培训', EDU_NON_SUBJECT: '非学科类校外培训', EDU_VOCATIONAL: '职业技能培训',
  CATERING: '餐饮', HOUSEKEEPING: '家政服务', FITNESS_ENTERTAINMENT: '健身娱乐', CULTURE_SPORTS: '文化体育',
  PET_SERVICES: '宠物服务', HAIR_BEAUTY: '美容美发', DRIVING_SCHOOL: '驾驶员培训', CAR_WASH: '洗车',
};
const name = (table, code) => (YX.lang === 'zh' && table[code]) || code;
const num = (s) => Number(s || 0);
const sumAlerts = (c) => Object.values(c.alerts || {}).reduce((a, b) => a + b, 0);
const graded = (c) => (c.grades || []).reduce((a, b) => a + b, 0);

// The month's totals over its cells (what the cards show).
function totals(month) {
  const t = { merchants: 0, on_escrow: 0, liability: 0, uncovered: 0, pd_sum: 0, graded: 0, closed: 0 };
  month.cells.forEach((c) => {
    t.merchants += c.merchants; t.on_escrow += c.on_escrow;
    t.liability += num(c.prepaid_liability); t.uncovered += num(c.uncovered_liability);
    t.pd_sum += c.pd_sum; t.graded += graded(c); t.closed += c.closed_with_liability;
  });
  return t;
}

function renderReport() {
  const r = R.report;
  if (!r) return;
  const f = r.figures;
  const months = f.months;
  const now = months[months.length - 1];
  const t = totals(now);
  YX.card('scope', r.district ? name(DISTRICTS_ZH, r.district) : YX.t('r.city'), r.district || 'CITY');
  YX.card('as-of', now.as_of, now.as_of);
  YX.card('known-at', YX.time(f.known_at), f.known_at);
  YX.card('k-trading', String(t.merchants), t.merchants);
  YX.card('k-onescrow', t.on_escrow + (t.merchants ? ' (' + YX.pct(t.on_escrow / t.merchants) + ')' : ''), t.on_escrow);
  YX.card('k-liability', YX.money(t.liability.toFixed(0)), t.liability.toFixed(2));
  YX.card('k-uncovered', YX.money(t.uncovered.toFixed(0)), t.uncovered.toFixed(2));
  YX.card('k-meanpd', t.graded ? YX.pct(t.pd_sum / t.graded) : '—', t.graded ? t.pd_sum / t.graded : '');
  YX.card('k-closed', String(t.closed), t.closed);
  YX.card('k-watch', String(r.watch_count), r.watch_count);
  const rows = now.cells.filter((c) => c.merchants > 0 || c.closed_in_month > 0).map((c) =>
    YX.el('tr', { 'data-district': c.district, 'data-industry': c.industry },
      YX.cell(name(DISTRICTS_ZH, c.district), c.district),
      YX.cell(name(INDUSTRIES_ZH, c.industry), c.industry),
      YX.cell(String(c.merchants), c.merchants, 'num'),
      YX.cell(String(c.on_escrow), c.on_escrow, 'num'),
      YX.cell(YX.money(num(c.prepaid_liability).toFixed(0)), c.prepaid_liability, 'num'),
      YX.cell(YX.money(num(c.uncovered_liability).toFixed(0)), c.uncovered_liability, 'num'),
      YX.cell(num(c.prepaid_liability) ? YX.pct(num(c.escrow_frozen) / num(c.prepaid_liability)) : '—', c.escrow_frozen, 'num'),
      YX.cell(graded(c) ? YX.pct(c.pd_sum / graded(c)) : '—', graded(c) ? c.pd_sum / graded(c) : '', 'num'),
      YX.cell(String(c.complaints_90d), c.complaints_90d, 'num'),
      YX.cell(String(c.closed_with_liability), c.closed_with_liability, 'num'),
      YX.cell(String(sumAlerts(c)), sumAlerts(c), 'num')));
  YX.fill(document.querySelector('#cells tbody'), rows, 11);
  const series = months.map((m) => ({ label: m.as_of, t: totals(m) }));
  chart('trend-pd', series.map((s) => [s.label, s.t.graded ? s.t.pd_sum / s.t.graded : null]), (v) => YX.pct(v));
  chart('trend-uncovered', series.map((s) => [s.label, s.t.uncovered / 1e4]), (v) => v.toFixed(1));
}

// A line chart of [label, value] points, drawn as SVG elements (no inline style).
function chart(id, points, fmt) {
  const svg = document.getElementById(id);
  const ns = 'http://www.w3.org/2000/svg';
  const make = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const vals = points.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v));
  let lo = Math.min(...vals); let hi = Math.max(...vals);
  if (!vals.length) { lo = 0; hi = 1; } else if (hi - lo < 1e-12) { lo -= Math.abs(lo) * 0.1 + 1e-6; hi += Math.abs(hi) * 0.1 + 1e-6; }
  const [left, top, w, h] = [70, 15, 510, 130];
  const x = (i) => left + (points.length > 1 ? w * i / (points.length - 1) : w / 2);
  const y = (v) => top + h * (1 - (v - lo) / (hi - lo));
  const kids = [make('line', { x1: left, y1: top + h, x2: left + w, y2: top + h, class: 'axis' }),
    make('text', { x: left - 6, y: top + 5, 'text-anchor': 'end' }, fmt(hi)),
    make('text', { x: left - 6, y: top + h, 'text-anchor': 'end' }, fmt(lo))];
  const pts = points.map((p, i) => (p[1] === null ? null : x(i).toFixed(1) + ',' + y(p[1]).toFixed(1))).filter(Boolean);
  kids.push(make('polyline', { points: pts.join(' '), class: 'line' }));
  points.forEach((p, i) => {
    if (i % 2 === (points.length - 1) % 2) kids.push(make('text', { x: x(i), y: top + h + 16, 'text-anchor': 'middle' }, p[0].slice(0, 7)));
    if (p[1] !== null) {
      const dot = make('circle', { cx: x(i), cy: y(p[1]), r: 3, class: 'dot' });
      dot.append(make('title', {}, p[0] + ': ' + fmt(p[1])));
      kids.push(dot);
    }
  });
  svg.replaceChildren(...kids);
  svg.setAttribute('aria-label', points.map((p) => p[0] + ' ' + (p[1] === null ? '—' : fmt(p[1]))).join(', '));
}

function renderWatch() {
  const zh = YX.lang === 'zh';
  const rows = R.watch.map((w) => YX.el('tr', { 'data-merchant': w.merchant_id },
    YX.cell(w.merchant_id, w.merchant_id),
    YX.cell(name(DISTRICTS_ZH, w.district), w.district),
    YX.cell(name(INDUSTRIES_ZH, w.industry), w.industry),
    YX.cell(w.closed_on ? YX.t('m.closed') + ' ' + w.closed_on : (w.grade || '—') + (w.pd === null ? '' : ' · ' + YX.pct(w.pd)), w.grade || ''),
    YX.cell(YX.money(num(w.uncovered_liability).toFixed(0)), w.uncovered_liability, 'num'),
    YX.cell(w.evidence.map((e) => (zh ? e.text_zh : e.text_en)).join('；') || '—', w.evidence.map((e) => e.code).join(','))));
  YX.fill(document.querySelector('#watch tbody'), rows, 6);
  document.getElementById('watch-more').hidden = !R.cursor;
}

async function moreWatch(month) {
  const r = await YX.api('GET', `/v1/regulator/watchlist?month=${month}&limit=50` + (R.cursor ? '&cursor=' + encodeURIComponent(R.cursor) : ''));
  R.watch.push(...r.json.items);
  R.cursor = r.json.next_cursor || null;
  renderWatch();
}

async function show(month) {
  YX.show('status', YX.t('loading'));
  try {
    R.report = (await YX.api('GET', `/v1/regulator/report?month=${month}`)).json;
    R.watch = [];
    R.cursor = null;
    renderReport();
    await moreWatch(month);
    YX.show('status', '');
    document.body.dataset.ready = '1';
  } catch (e) {
    YX.fail('status', e);
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  if (!(await YX.start('regulator'))) return;
  YX.renderers.push(renderReport, renderWatch);
  const select = document.getElementById('month');
  try {
    const months = await YX.all('/v1/regulator/reports?limit=100', 120);
    select.replaceChildren(...months.map((m) => YX.el('option', { value: m }, m)));
    if (!months.length) { YX.show('status', YX.t('r.noreports'), true); return; }
  } catch (e) {
    YX.fail('status', e);
    return;
  }
  document.getElementById('pick').addEventListener('submit', (ev) => { ev.preventDefault(); show(select.value); });
  document.getElementById('watch-more').addEventListener('click', () => moreWatch(select.value).catch((e) => YX.fail('status', e)));
  show(select.value);
});
