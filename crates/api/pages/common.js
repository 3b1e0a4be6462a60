// Shared by every page: the texts in Chinese and English, the session, calls to the JSON
// API (the pages compute nothing the API does not return), and small DOM helpers.
'use strict';

const TEXTS = {
  zh: {
    'lang.switch': 'English', 'signout': '退出', 'signin.title': '元信 · 登录',
    'signin.key': 'API 密钥', 'signin.submit': '登录', 'signin.help': '输入平台发给您的密钥（演示服务启动时会打印登录链接）。',
    'signin.failed': '登录失败：', 'loading': '加载中…', 'error': '出错了：', 'none': '暂无',
    'more': '更多', 'yes': '是', 'no': '否', 'missing': '缺失',
    'm.title': '元信 · 我的融资', 'm.credit': '我的信用', 'm.grade': '等级', 'm.subgrade': '细分等级',
    'm.score': '评分', 'm.pd': '违约概率（12个月）', 'm.asof': '数据截至', 'm.history': '近12个月末评分',
    'm.history.alt': '近12个月末评分：', 'm.closed': '已停业',
    'm.reasons': '拉低评分的因素', 'm.characteristic': '指标', 'm.myvalue': '我的数值',
    'm.bin': '所在区间', 'm.pointslost': '损失分数',
    'm.hints': '我可以怎么做', 'm.hints.none': '目前没有可改进的建议。', 'm.hints.after': '改进后：',
    'm.borrow': '我能贷款吗', 'm.amount': '金额（元）', 'm.term': '期限（月）', 'm.loanpurpose': '用途',
    'm.check': '查询', 'm.outcome': '结果', 'm.offers': '可申请的产品（按补贴后实际成本排序）',
    'm.product': '产品', 'm.institution': '机构', 'm.offer.amount': '可贷金额', 'm.rate': '年利率',
    'm.effrate': '补贴后实际利率', 'm.monthly': '月供', 'm.interest': '总利息',
    'm.interest.after': '补贴后总利息', 'm.support': '扶持政策', 'm.misses': '差一点就能申请的产品',
    'm.nooffers': '没有符合条件的产品。',
    'm.queries': '谁查询了我的信息', 'm.when': '时间', 'm.who': '机构', 'm.what': '内容', 'm.purpose': '用途',
    'm.consents': '我的授权', 'm.lender': '机构', 'm.granted': '授权时间', 'm.expires': '到期时间',
    'm.inforce': '有效', 'm.revoke': '撤销', 'm.grant': '授权', 'm.days': '天数（1–366）',
    'm.disputes': '我的异议', 'm.subject': '异议事项', 'm.detail': '说明', 'm.open': '提交异议',
    'm.opened': '提交时间', 'm.deadline': '答复期限（20天）', 'm.answer': '答复', 'm.status': '状态',
    'm.pending': '处理中', 'm.overdue': '已逾期', 'm.answered': '已答复',
    'purpose.working_capital': '经营周转', 'purpose.equipment': '设备购置', 'purpose.renovation': '装修改造',
    'purpose.expansion': '开设门店', 'cpurpose.pre_loan': '贷前审查', 'cpurpose.post_loan': '贷后管理',
    'outcome.approve': '可批准', 'outcome.refer': '需人工审核', 'outcome.decline': '暂不符合',
    'action.score': '查询评分', 'action.eligibility': '贷款资格', 'action.batch_score': '批量评分',
    'action.alerts': '风险预警',
    'grade.A+': '信用极好，违约风险极低，可获得最优惠的贷款条件。',
    'grade.A': '信用很好，违约风险很低。',
    'grade.B': '信用良好，违约风险较低，多数产品可以申请。',
    'grade.C': '信用一般，部分产品需要人工审核。',
    'grade.D': '信用偏弱，违约风险较高，贷款可能需要担保或被拒绝。',
    'grade.E': '信用较差，违约风险高，目前难以获得贷款。',
    'l.title': '元信 · 信贷员工作台', 'l.lookup': '查询商户', 'l.merchant': '商户编号',
    'l.cpurpose': '查询用途', 'l.lookup.go': '查询', 'l.receipt': '查询凭证',
    'l.logindex': '日志序号', 'l.treesize': '签名树大小', 'l.root': '根哈希',
    'l.eligibility': '贷款资格', 'l.portfolio': '批量评分（上传商户编号 CSV）', 'l.file': 'CSV 文件',
    'l.run': '评分', 'l.download': '下载结果 CSV', 'l.status': '状态', 'l.detail': '说明',
    'l.alerts': '风险预警', 'l.alert': '预警', 'l.evidence': '依据', 'l.value': '数值', 'l.threshold': '阈值',
    'l.consents': '本机构持有的授权', 'l.noalerts': '没有预警。',
    'r.title': '元信 · 试点监测', 'r.report': '月度监测', 'r.month': '月份', 'r.show': '查看',
    'r.scope': '范围', 'r.city': '全市', 'r.knownat': '知识时点', 'r.trading': '在营主体',
    'r.onescrow': '接入元管家', 'r.liability': '预付负债（元）', 'r.uncovered': '未被存管覆盖（元）',
    'r.meanpd': '平均违约概率', 'r.closedowing': '本月闭店欠款户', 'r.watch': '风险监测名单',
    'r.cells': '分区分行业', 'r.district': '区', 'r.industry': '行业', 'r.escrowcov': '存管覆盖率',
    'r.complaints': '近90天投诉', 'r.alerts': '预警', 'r.trend': '月度趋势',
    'r.trend.pd': '平均违约概率（各月末）', 'r.trend.uncovered': '未被存管覆盖的预付负债（万元，各月末）',
    'r.standing': '评级/状态', 'r.noreports': '还没有月度报告（平台用 yuanxin report monthly 生成）。',
  },
  en: {
    'lang.switch': '中文', 'signout': 'Sign out', 'signin.title': 'Yuanxin · Sign in',
    'signin.key': 'API key', 'signin.submit': 'Sign in', 'signin.help': 'Enter the key the platform gave you (the demo service prints sign-in links when it starts).',
    'signin.failed': 'Sign-in failed: ', 'loading': 'Loading…', 'error': 'Error: ', 'none': 'None',
    'more': 'More', 'yes': 'yes', 'no': 'no', 'missing': 'missing',
    'm.title': 'Yuanxin · My financing', 'm.credit': 'My credit', 'm.grade': 'Grade', 'm.subgrade': 'Sub-grade',
    'm.score': 'Score', 'm.pd': 'Probability of default (12 months)', 'm.asof': 'Data as of', 'm.history': 'Score at the last 12 month-ends',
    'm.history.alt': 'Score at the last 12 month-ends: ', 'm.closed': 'closed',
    'm.reasons': 'What holds my score down', 'm.characteristic': 'Characteristic', 'm.myvalue': 'My value',
    'm.bin': 'Band', 'm.pointslost': 'Points lost',
    'm.hints': 'What I can do', 'm.hints.none': 'No improvement hints at the moment.', 'm.hints.after': 'After: ',
    'm.borrow': 'Can I borrow?', 'm.amount': 'Amount (yuan)', 'm.term': 'Term (months)', 'm.loanpurpose': 'Purpose',
    'm.check': 'Check', 'm.outcome': 'Outcome', 'm.offers': 'Products I can apply for (cheapest after subsidy first)',
    'm.product': 'Product', 'm.institution': 'Institution', 'm.offer.amount': 'Amount', 'm.rate': 'Rate a year',
    'm.effrate': 'Effective rate after subsidy', 'm.monthly': 'Monthly payment', 'm.interest': 'Total interest',
    'm.interest.after': 'Total interest after subsidy', 'm.support': 'Support schemes', 'm.misses': 'Near misses',
    'm.nooffers': 'No product matches.',
    'm.queries': 'Who looked at my information', 'm.when': 'When', 'm.who': 'Institution', 'm.what': 'What', 'm.purpose': 'Purpose',
    'm.consents': 'My consents', 'm.lender': 'Institution', 'm.granted': 'Granted', 'm.expires': 'Expires',
    'm.inforce': 'In force', 'm.revoke': 'Revoke', 'm.grant': 'Grant', 'm.days': 'Days (1–366)',
    'm.disputes': 'My objections', 'm.subject': 'What I object to', 'm.detail': 'Why', 'm.open': 'Open an objection',
    'm.opened': 'Opened', 'm.deadline': 'Answer due (20 days)', 'm.answer': 'Answer', 'm.status': 'Status',
    'm.pending': 'pending', 'm.overdue': 'overdue', 'm.answered': 'answered',
    'purpose.working_capital': 'Working capital', 'purpose.equipment': 'Equipment', 'purpose.renovation': 'Renovation',
    'purpose.expansion': 'Opening stores', 'cpurpose.pre_loan': 'Pre-loan check', 'cpurpose.post_loan': 'Post-loan monitoring',
    'outcome.approve': 'Approve', 'outcome.refer': 'Refer to an officer', 'outcome.decline': 'Not eligible now',
    'action.score': 'score', 'action.eligibility': 'eligibility', 'action.batch_score': 'portfolio score',
    'action.alerts': 'alerts',
    'grade.A+': 'Excellent credit: very low risk of default; the best loan terms.',
    'grade.A': 'Very good credit: low risk of default.',
    'grade.B': 'Good credit: fairly low risk; most products are open to you.',
    'grade.C': 'Fair credit: some products need an officer\u2019s review.',
    'grade.D': 'Weak credit: higher risk; a loan may need a guarantee or be declined.',
    'grade.E': 'Poor credit: high risk of default; a loan is hard to get for now.',
    'l.title': 'Yuanxin · Loan officer console', 'l.lookup': 'Look up a merchant', 'l.merchant': 'Merchant id',
    'l.cpurpose': 'Purpose of the query', 'l.lookup.go': 'Look up', 'l.receipt': 'Receipt of this query',
    'l.logindex': 'Log index', 'l.treesize': 'Signed tree size', 'l.root': 'Root hash',
    'l.eligibility': 'Eligibility', 'l.portfolio': 'Portfolio (upload a CSV of merchant ids)', 'l.file': 'CSV file',
    'l.run': 'Score', 'l.download': 'Download results as CSV', 'l.status': 'Status', 'l.detail': 'Detail',
    'l.alerts': 'Early-warning alerts', 'l.alert': 'Alert', 'l.evidence': 'Evidence', 'l.value': 'Value', 'l.threshold': 'Threshold',
    'l.consents': 'Consents this institution holds', 'l.noalerts': 'No alerts.',
    'r.title': 'Yuanxin · Pilot monitoring', 'r.report': 'Monthly monitoring', 'r.month': 'Month', 'r.show': 'Show',
    'r.scope': 'Scope', 'r.city': 'Shenzhen, all districts', 'r.knownat': 'known at', 'r.trading': 'Trading merchants',
    'r.onescrow': 'On 元管家', 'r.liability': 'Prepaid liability (yuan)', 'r.uncovered': 'Not covered by escrow (yuan)',
    'r.meanpd': 'Mean PD', 'r.closedowing': 'Closed this month owing', 'r.watch': 'Watch list',
    'r.cells': 'By district and industry', 'r.district': 'District', 'r.industry': 'Industry', 'r.escrowcov': 'Escrow coverage',
    'r.complaints': 'Complaints, 90 days', 'r.alerts': 'Alerts', 'r.trend': 'Trends',
    'r.trend.pd': 'Mean PD at each month-end', 'r.trend.uncovered': 'Prepaid liability not covered by escrow (10k yuan, month-ends)',
    'r.standing': 'Grade or status', 'r.noreports': 'No monthly report yet (the platform writes them with yuanxin report monthly).',
  },
};

const YX = {
  lang: localStorage.getItem('yx_lang') === 'en' ? 'en' : 'zh',
  csrf: null,
  who: null,
  renderers: [],

  t(key) {
    const v = TEXTS[this.lang][key];
    return v === undefined ? key : v;
  },

  // Fills every element's text from its data-t key and sets the document's language.
  applyTexts() {
    document.documentElement.lang = this.lang === 'zh' ? 'zh-CN' : 'en';
    document.querySelectorAll('[data-t]').forEach((e) => { e.textContent = this.t(e.dataset.t); });
    const title = document.querySelector('h1[data-t]');
    if (title) document.title = title.textContent;
  },

  setLang(lang) {
    this.lang = lang;
    localStorage.setItem('yx_lang', lang);
    this.applyTexts();
    this.renderers.forEach((r) => r());
  },

  // A call to the JSON API with the session cookie; changes carry the anti-forgery token.
  async api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = this.csrf || '';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) { location.assign('/signin'); throw new Error('signed out'); }
    const text = await r.text();
    const json = text ? JSON.parse(text) : null;
    if (!r.ok) {
      const p = json || {};
      const err = new Error((this.lang === 'zh' && p.title_zh ? p.title_zh : p.title || r.status) + (p.detail ? ': ' + p.detail : ''));
      err.problem = p;
      throw err;
    }
    return { json, headers: r.headers };
  },

  // The session: who is signed in, and the token for changes. A page of another role goes
  // to its own page.
  async start(role) {
    this.applyTexts();
    const r = await fetch('/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!r.ok) { location.assign('/signin'); return false; }
    this.who = await r.json();
    if (this.who.role !== role) { location.assign(this.who.home || '/signin'); return false; }
    this.csrf = this.who.csrf_token;
    const who = document.getElementById('who');
    if (who) who.textContent = this.who.name === this.who.code ? this.who.code : this.who.name + ' (' + this.who.code + ')';
    document.getElementById('lang').addEventListener('click', () => this.setLang(this.lang === 'zh' ? 'en' : 'zh'));
    document.getElementById('signout').addEventListener('click', async () => {
      await this.api('DELETE', '/session');
      location.assign('/signin');
    });
    return true;
  },

  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined) return;
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    });
    children.flat().forEach((c) => e.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return e;
  },

  // A table cell showing an API value: the raw value stays in data-raw.
  cell(text, raw, cls) {
    return this.el('td', { class: cls, 'data-raw': raw === undefined ? null : String(raw) }, text);
  },

  fill(tbody, rows, cols) {
    tbody.replaceChildren(...rows);
    if (!rows.length) tbody.append(this.el('tr', {}, this.el('td', { colspan: String(cols), class: 'muted' }, this.t('none'))));
  },

  // Every item of a paged list route (`path` has its query already), following
  // `next_cursor`, at most about `max`.
  async all(path, max) {
    const items = [];
    let cursor = null;
    do {
      const r = await this.api('GET', path + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
      items.push(...r.json.items);
      cursor = r.json.next_cursor;
    } while (cursor && items.length < max);
    return items;
  },

  card(id, text, raw) {
    const e = document.getElementById(id);
    e.textContent = text;
    e.dataset.raw = raw === null || raw === undefined ? '' : String(raw);
  },

  // A score as both pages show it: the cards, the grade's meaning (where the page has a
  // place for it) and the reasons table.
  showScore(s) {
    const closed = s.status === 'closed';
    this.card('public-grade', closed ? this.t('m.closed') : s.public_grade, s.public_grade);
    this.card('grade', closed ? '—' : s.grade, s.grade);
    this.card('score', closed ? '—' : String(s.score), s.score);
    this.card('pd', closed ? '—' : this.pct(s.pd), s.pd);
    this.card('as-of', s.as_of, s.as_of);
    const meaning = document.getElementById('meaning');
    if (meaning) meaning.textContent = closed ? '' : this.t('grade.' + s.public_grade);
    const rows = s.reasons.map((r) => this.el('tr', { 'data-feature': r.feature },
      this.cell(this.lang === 'zh' ? r.name_zh : r.name_en, r.feature),
      this.cell(this.value(r.value), r.value),
      this.cell(this.band(r.bin), r.bin || ''),
      this.cell(String(Math.round(r.points_lost * 100) / 100), r.points_lost, 'num')));
    this.fill(document.querySelector('#reasons tbody'), rows, 4);
  },

  // A decision as both pages show it: the outcome, its reason codes (policy and model
  // alike) and the offers table.
  showDecision(d) {
    const out = document.getElementById('outcome');
    out.textContent = this.t('outcome.' + d.outcome);
    out.dataset.raw = d.outcome;
    document.getElementById('decision-reasons').replaceChildren(...d.reasons.map((r) =>
      this.el('li', { 'data-code': r.code }, this.lang === 'zh' ? r.zh : r.en)));
    const zh = this.lang === 'zh';
    const offers = d.offers.map((o) => this.el('tr', { 'data-product': o.product },
      this.cell(zh ? o.name_zh : o.name, o.product),
      this.cell(zh ? o.institution_zh : o.institution, o.institution),
      this.cell(this.money(o.amount), o.amount, 'num'),
      this.cell(this.rate(o.price.rate), o.price.rate, 'num'),
      this.cell(this.rate(o.price.effective_rate), o.price.effective_rate, 'num'),
      this.cell(this.money(o.monthly_payment), o.monthly_payment, 'num'),
      this.cell(this.money(o.total_interest), o.total_interest, 'num'),
      this.cell(this.money(o.total_interest_after_support), o.total_interest_after_support, 'num'),
      this.cell(o.support.map((x) => (zh ? x.name_zh : x.name)).join('、') || '—',
        o.support.map((x) => x.id).join(','))));
    this.fill(document.querySelector('#offers tbody'), offers, 9);
  },

  // Clears what `showDecision` showed.
  clearDecision() {
    document.getElementById('outcome').textContent = '';
    document.getElementById('decision-reasons').replaceChildren();
    this.fill(document.querySelector('#offers tbody'), [], 9);
  },

  // Formats: money strings from the API with digit grouping; PDs and rates as percentages.
  money(s) {
    if (s === null || s === undefined) return '';
    const [i, f] = String(s).split('.');
    return i.replace(/\B(?=(\d{3})+(?!\d))/g, ',') + (f ? '.' + f : '');
  },
  // A numeric band as the model stores it ("[1.365732e-1, 3.219096e-1)") with its bounds
  // rounded for reading ("[0.137, 0.322)"); category bands are shown as they are.
  band(s) {
    if (!s || !/^[[(]/.test(s)) return s || '';
    const num = (m) => {
      const x = Number(m);
      if (!Number.isFinite(x)) return m;
      return String(Math.abs(x) >= 1000 ? Math.round(x) : Number(x.toPrecision(3)));
    };
    return s.replace(/-?\d+(\.\d+)?(e[-+]?\d+)?/gi, num).replace(/\binf\b/g, '∞');
  },
  // A characteristic's value as the API gives it (a decimal string, or "missing"),
  // rounded to two decimals for reading.
  value(v) {
    if (v === 'missing') return this.t('missing');
    const x = Number(v);
    return Number.isFinite(x) && String(v).trim() !== '' ? String(Math.round(x * 100) / 100) : v;
  },
  pct(p) { return p === null || p === undefined ? '' : (Math.round(p * 10000) / 100).toFixed(2) + '%'; },
  rate(s) { return s === null || s === undefined ? '' : s + '%'; },
  time(s) { return s ? s.replace('T', ' ').replace(/(:\d\d)(\.\d+)?\+08:00$/, '$1') : ''; },

  show(id, text, isError) {
    const e = document.getElementById(id);
    if (!e) return;
    e.textContent = text;
    e.className = isError ? 'error' : '';
  },

  fail(id, e) { this.show(id, this.t('error') + e.message, true); },
};
