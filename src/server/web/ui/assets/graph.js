// tsdb web UI: the expression browser (/graph). Panels of an expression each, shown as a table
// (instant query) or a graph (range query, drawn by uPlot); the whole state in the URL with
// Prometheus' parameters g<i>.expr, g<i>.tab (0 graph, 1 table), g<i>.range_input,
// g<i>.end_input (and moment_input), g<i>.step_input, g<i>.stacked — so links made for
// Prometheus (Grafana's "explore" links included) open the same view.
//
// As in ui.js, server data is only ever put into the page as text.
'use strict';

(function () {
  const T = window.TSDB;
  const el = T.el;

  // Results beyond these are cut, with a notice, so a huge result cannot freeze the tab.
  const MAX_TABLE_ROWS = 10000;
  const MAX_GRAPH_SERIES = 500;
  // The API refuses more points per series than this (Prometheus' 11,000 limit); the step is
  // raised to stay under it.
  const MAX_POINTS = 11000;
  // The range input's -/+ buttons step through these (Prometheus' list).
  const RANGE_STEPS = ['1s', '10s', '1m', '5m', '15m', '30m', '1h', '2h', '6h', '12h', '1d', '2d', '1w', '2w', '4w', '8w', '1y', '2y']
    .map(T.parseDuration);
  const DEFAULT_RANGE = 3600e3;

  const FUNCTIONS = ['abs', 'absent', 'absent_over_time', 'acos', 'acosh', 'asin', 'asinh', 'atan', 'atanh',
    'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min', 'cos', 'cosh', 'count_over_time',
    'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month', 'deg', 'delta', 'deriv', 'exp', 'floor',
    'histogram_count', 'histogram_fraction', 'histogram_quantile', 'histogram_sum', 'holt_winters', 'hour',
    'idelta', 'increase', 'irate', 'label_join', 'label_replace', 'last_over_time', 'ln', 'log10', 'log2',
    'max_over_time', 'min_over_time', 'minute', 'month', 'pi', 'predict_linear', 'present_over_time',
    'quantile_over_time', 'rad', 'rate', 'resets', 'round', 'scalar', 'sgn', 'sin', 'sinh', 'sort', 'sort_desc',
    'sqrt', 'stddev_over_time', 'stdvar_over_time', 'sum_over_time', 'tan', 'tanh', 'time', 'timestamp',
    'vector', 'year'];
  const AGGREGATIONS = ['avg', 'bottomk', 'count', 'count_values', 'group', 'max', 'min', 'quantile', 'stddev',
    'stdvar', 'sum', 'topk'];
  const KEYWORDS = ['and', 'bool', 'by', 'group_left', 'group_right', 'ignoring', 'offset', 'on', 'or', 'unless', 'without'];

  // ---- Completion sources (the API), cached for the page's life ----
  const cache = new Map();
  function cached(key, load) {
    if (!cache.has(key)) {
      cache.set(key, load().catch((e) => { cache.delete(key); throw e; }));
    }
    return cache.get(key);
  }
  const metricNames = () => cached('names', () => T.api('/api/v1/label/__name__/values').then((b) => b.data));
  const labelNames = (metric) => cached('labels:' + metric, () =>
    T.api('/api/v1/labels', metric ? { 'match[]': metric } : {}).then((b) => b.data.filter((n) => n !== '__name__')));
  const labelValues = (name, metric) => cached('values:' + name + ':' + metric, () =>
    T.api('/api/v1/label/' + encodeURIComponent(name) + '/values', metric ? { 'match[]': metric } : {}).then((b) => b.data));

  // What to complete at the caret: {kind, prefix, items: Promise<[{text, kind}]>} or null.
  function completionContext(text, caret) {
    const before = text.slice(0, caret);
    // Inside a string or a range/offset duration: nothing.
    const quotes = (before.match(/(?<!\\)"/g) || []).length;
    const open = before.lastIndexOf('{');
    const close = before.lastIndexOf('}');
    if (open > close) {
      const metric = (/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(before.slice(0, open)) || [])[1] || '';
      const seg = before.slice(open + 1);
      const val = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/.exec(seg);
      if (val) {
        return {
          kind: 'value', prefix: val[3], metric,
          items: labelValues(val[1], metric).then((vs) => vs.map((v) => ({ text: JSON.stringify(v).slice(1, -1), kind: 'label value' }))),
        };
      }
      if (quotes % 2 === 1) return null;
      const name = /(?:^|[{,\s])([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(seg);
      if (name) {
        return { kind: 'label', prefix: name[1] || '', items: labelNames(metric).then((ns) => ns.map((n) => ({ text: n, kind: 'label' }))) };
      }
      return null;
    }
    if (quotes % 2 === 1) return null;
    if (before.lastIndexOf('[') > before.lastIndexOf(']')) return null;
    const grouping = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)$/.exec(before);
    if (grouping) {
      const prefix = (/([a-zA-Z_][a-zA-Z0-9_]*)$/.exec(grouping[2]) || [])[1] || '';
      return { kind: 'label', prefix, items: labelNames('').then((ns) => ns.map((n) => ({ text: n, kind: 'label' }))) };
    }
    const word = /(?:^|[^a-zA-Z0-9_:])([a-zA-Z_:][a-zA-Z0-9_:]*)$/.exec(before);
    if (!word) return null;
    if (/offset\s+$/.test(before.slice(0, before.length - word[1].length))) return null;
    return {
      kind: 'name', prefix: word[1],
      items: metricNames().catch(() => []).then((ms) => [
        ...ms.map((m) => ({ text: m, kind: 'metric' })),
        ...FUNCTIONS.map((f) => ({ text: f, kind: 'function' })),
        ...AGGREGATIONS.map((f) => ({ text: f, kind: 'aggregation' })),
        ...KEYWORDS.map((f) => ({ text: f, kind: 'keyword' })),
      ]),
    };
  }

  function rankCompletions(items, prefix) {
    const p = prefix.toLowerCase();
    const starts = [];
    const contains = [];
    for (const it of items) {
      const t = it.text.toLowerCase();
      if (t === p) continue;
      if (t.startsWith(p)) starts.push(it);
      else if (p && t.includes(p)) contains.push(it);
    }
    return starts.concat(contains).slice(0, 50);
  }

  // ---- Formatting ----
  function fmtValue(v) {
    if (v === null || v === undefined) return '';
    if (!isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e15 || a < 1e-4)) return v.toExponential(3);
    return String(parseFloat(v.toPrecision(6)));
  }
  // The API's sample values are strings ("1.5", "NaN", "+Inf").
  function sampleValue(s) {
    if (s === '+Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    return Number(s);
  }
  function color(i, alpha) {
    const h = Math.round((i * 137.508) % 360);
    return alpha === undefined ? 'hsl(' + h + ',65%,42%)' : 'hsla(' + h + ',65%,42%,' + alpha + ')';
  }

  // ---- URL state ----
  function readPanels() {
    const q = new URLSearchParams(location.search);
    const panels = [];
    for (let i = 0; ; i++) {
      const g = (k) => q.get('g' + i + '.' + k);
      if (![...q.keys()].some((k) => k.startsWith('g' + i + '.'))) break;
      const range = T.parseDuration(g('range_input') || '');
      const endStr = g('end_input') || g('moment_input') || '';
      const end = T.parseInputTime(endStr);
      const step = parseFloat(g('step_input') || '');
      panels.push({
        expr: g('expr') || '',
        tab: g('tab') === '0' ? 0 : 1,
        range: range > 0 ? range : DEFAULT_RANGE,
        end: end !== null && isFinite(end) ? end : null,
        step: step > 0 ? step : null,
        stacked: g('stacked') === '1',
      });
    }
    return panels.length ? panels : [newPanelState()];
  }

  function newPanelState() {
    return { expr: '', tab: 1, range: DEFAULT_RANGE, end: null, step: null, stacked: false };
  }

  // ---- The page ----
  T.pages.graph = function (main) {
    const panels = [];
    const list = el('div', { class: 'panels' });
    const writeUrl = () => {
      const p = new URLSearchParams();
      panels.forEach((pn, i) => {
        const s = pn.state;
        p.set('g' + i + '.expr', s.expr);
        p.set('g' + i + '.tab', String(s.tab));
        p.set('g' + i + '.stacked', s.stacked ? '1' : '0');
        p.set('g' + i + '.show_exemplars', '0');
        p.set('g' + i + '.range_input', T.fmtDuration(s.range));
        if (s.end !== null) {
          p.set('g' + i + '.end_input', T.fmtInputTime(s.end));
          p.set('g' + i + '.moment_input', T.fmtInputTime(s.end));
        }
        if (s.step) p.set('g' + i + '.step_input', String(s.step));
      });
      history.replaceState(null, '', location.pathname + '?' + p.toString());
    };
    const add = (state) => {
      const pn = new Panel(state, writeUrl, () => {
        panels.splice(panels.indexOf(pn), 1);
        pn.destroy();
        writeUrl();
      });
      panels.push(pn);
      list.append(pn.root);
      return pn;
    };
    main.append(list, el('button', { class: 'add-panel', type: 'button', onclick: () => { add(newPanelState()).focus(); writeUrl(); } }, 'Add Panel'));
    for (const s of readPanels()) {
      const pn = add(s);
      if (s.expr) pn.execute();
    }
    window.addEventListener('resize', () => panels.forEach((p) => p.resize()));
  };

  class Panel {
    constructor(state, onChange, onRemove) {
      this.state = state;
      this.onChange = onChange;
      this.chart = null;
      this.seq = 0;
      this.hidden = new Set();
      this.completion = { items: [], index: -1, ctx: null, seq: 0 };
      this.build(onRemove);
    }

    build(onRemove) {
      const s = this.state;
      this.input = el('textarea', {
        class: 'expr', rows: 1, spellcheck: 'false', autocomplete: 'off', 'aria-label': 'Expression',
        placeholder: 'Expression (press Shift+Enter for newlines)',
        oninput: () => { this.autosize(); this.complete(); },
        onkeydown: (e) => this.onKey(e),
        onblur: () => setTimeout(() => this.closeCompletion(), 150),
        onclick: () => this.complete(),
      });
      this.input.value = s.expr;
      this.completions = el('ul', { class: 'completions', role: 'listbox', hidden: true });
      this.errorBox = el('div', { class: 'query-error', hidden: true });
      this.warnBox = el('div', { class: 'query-warnings', hidden: true });
      this.stats = el('span', { class: 'stats muted' });
      this.tabButtons = [
        el('button', { type: 'button', class: 'tab', dataset: { tab: '1' }, onclick: () => this.setTab(1) }, 'Table'),
        el('button', { type: 'button', class: 'tab', dataset: { tab: '0' }, onclick: () => this.setTab(0) }, 'Graph'),
      ];

      // Table tab: evaluation time.
      this.timeInput = el('input', { class: 'time-input', type: 'text', placeholder: 'Evaluation time (UTC)', onchange: (e) => this.setEnd(e.target.value) });
      this.tableBox = el('div', { class: 'table-box' });
      this.tablePane = el('div', { class: 'pane pane-table' },
        el('div', { class: 'controls' },
          el('button', { type: 'button', title: 'Earlier', onclick: () => this.shiftEnd(-1) }, '‹'),
          this.timeInput,
          el('button', { type: 'button', title: 'Later', onclick: () => this.shiftEnd(1) }, '›'),
          el('button', { type: 'button', title: 'Now', onclick: () => this.setEnd('') }, 'now')),
        this.tableBox);

      // Graph tab: range, end, step, lines/stacked, PNG.
      this.rangeInput = el('input', { class: 'range-input', type: 'text', size: 6, onchange: (e) => this.setRange(e.target.value) });
      this.endInput = el('input', { class: 'end-input', type: 'text', placeholder: 'End time (UTC)', onchange: (e) => this.setEnd(e.target.value) });
      this.stepInput = el('input', { class: 'step-input', type: 'text', size: 8, onchange: (e) => this.setStep(e.target.value) });
      this.linesBtn = el('button', { type: 'button', class: 'toggle', onclick: () => this.setStacked(false) }, 'Lines');
      this.stackBtn = el('button', { type: 'button', class: 'toggle', onclick: () => this.setStacked(true) }, 'Stacked');
      this.notice = el('div', { class: 'notice', role: 'status', hidden: true });
      this.chartBox = el('div', { class: 'chart' });
      this.tooltip = el('div', { class: 'chart-tooltip', hidden: true });
      this.legend = el('div', { class: 'legend' });
      this.graphPane = el('div', { class: 'pane pane-graph' },
        el('div', { class: 'controls' },
          el('button', { type: 'button', title: 'Shorter range', onclick: () => this.stepRange(-1) }, '−'),
          this.rangeInput,
          el('button', { type: 'button', title: 'Longer range', onclick: () => this.stepRange(1) }, '+'),
          el('button', { type: 'button', title: 'Earlier', onclick: () => this.shiftEnd(-1) }, '«'),
          this.endInput,
          el('button', { type: 'button', title: 'Later', onclick: () => this.shiftEnd(1) }, '»'),
          el('label', null, 'Res. ', this.stepInput),
          el('span', { class: 'btn-group' }, this.linesBtn, this.stackBtn),
          el('button', { type: 'button', class: 'save-png', onclick: () => this.savePng() }, 'Save PNG')),
        this.notice, el('div', { class: 'chart-wrap' }, this.chartBox, this.tooltip), this.legend);

      this.root = el('section', { class: 'panel' },
        el('div', { class: 'expr-row' },
          el('div', { class: 'editor' }, this.input, this.completions),
          el('button', { type: 'button', class: 'execute primary', onclick: () => this.execute() }, 'Execute'),
          el('button', { type: 'button', class: 'remove', title: 'Remove panel', onclick: onRemove }, '×')),
        this.errorBox, this.warnBox,
        el('div', { class: 'tabs' }, this.tabButtons, this.stats),
        this.tablePane, this.graphPane);
      this.syncControls();
      this.autosize();
    }

    focus() { this.input.focus(); }

    destroy() {
      if (this.chart) this.chart.destroy();
      this.root.remove();
    }

    autosize() {
      this.input.rows = Math.max(1, this.input.value.split('\n').length);
    }

    syncControls() {
      const s = this.state;
      for (const b of this.tabButtons) b.classList.toggle('active', b.dataset.tab === String(s.tab));
      this.tablePane.hidden = s.tab !== 1;
      this.graphPane.hidden = s.tab !== 0;
      this.rangeInput.value = T.fmtDuration(s.range);
      const end = s.end === null ? '' : T.fmtInputTime(s.end);
      this.endInput.value = end;
      this.timeInput.value = end;
      this.stepInput.value = s.step ? String(s.step) : '';
      this.stepInput.placeholder = defaultStep(s.range) + 's';
      this.linesBtn.classList.toggle('active', !s.stacked);
      this.stackBtn.classList.toggle('active', s.stacked);
    }

    changed() {
      this.syncControls();
      this.onChange();
      if (this.state.expr) this.execute();
    }

    setTab(t) { this.state.tab = t; this.changed(); }
    setStacked(on) { this.state.stacked = on; this.changed(); }

    setRange(text) {
      const ms = T.parseDuration(text);
      if (ms > 0) this.state.range = ms;
      this.changed();
    }

    stepRange(dir) {
      const r = this.state.range;
      const next = dir > 0 ? RANGE_STEPS.find((x) => x > r) : [...RANGE_STEPS].reverse().find((x) => x < r);
      if (next) this.state.range = next;
      this.changed();
    }

    setEnd(text) {
      const t = T.parseInputTime(text);
      this.state.end = t !== null && isFinite(t) ? t : null;
      this.changed();
    }

    // Moves the end (or the table's evaluation time) by half the range, as Prometheus' buttons.
    shiftEnd(dir) {
      const base = this.state.end === null ? Date.now() : this.state.end;
      this.state.end = base + (dir * this.state.range) / 2;
      this.changed();
    }

    setStep(text) {
      const v = parseFloat(text);
      this.state.step = v > 0 ? v : null;
      this.changed();
    }

    // ---- Keyboard and completion ----
    onKey(e) {
      const c = this.completion;
      const open = !this.completions.hidden && c.items.length > 0;
      if (open && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
        e.preventDefault();
        const n = c.items.length;
        c.index = e.key === 'ArrowDown' ? (c.index + 1) % n : (c.index - 1 + n) % n;
        this.renderCompletion();
        return;
      }
      if (open && (e.key === 'Tab' || (e.key === 'Enter' && c.index >= 0))) {
        e.preventDefault();
        this.accept(c.items[Math.max(c.index, 0)]);
        return;
      }
      if (open && e.key === 'Escape') {
        e.preventDefault();
        this.closeCompletion();
        return;
      }
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        this.closeCompletion();
        this.execute();
      }
    }

    complete() {
      const c = this.completion;
      const seq = ++c.seq;
      const ctx = completionContext(this.input.value, this.input.selectionStart);
      if (!ctx || (ctx.kind === 'name' && ctx.prefix === '')) {
        this.closeCompletion();
        return;
      }
      ctx.items.then((items) => {
        if (seq !== c.seq) return;
        c.ctx = ctx;
        this.completions.dataset.kind = ctx.kind;
        c.items = rankCompletions(items, ctx.prefix);
        c.index = -1;
        this.renderCompletion();
      }, () => this.closeCompletion());
    }

    renderCompletion() {
      const c = this.completion;
      T.clear(this.completions);
      c.items.forEach((it, i) => {
        this.completions.append(el('li', {
          role: 'option', class: i === c.index ? 'selected' : null,
          onmousedown: (e) => { e.preventDefault(); this.accept(it); },
        }, el('span', { class: 'completion-text' }, it.text), el('span', { class: 'completion-kind' }, it.kind)));
      });
      this.completions.hidden = c.items.length === 0;
    }

    closeCompletion() {
      this.completion.items = [];
      this.completion.seq++;
      this.completions.hidden = true;
    }

    accept(item) {
      const ctx = this.completion.ctx;
      const v = this.input.value;
      const caret = this.input.selectionStart;
      const start = caret - ctx.prefix.length;
      let insert = item.text;
      if (ctx.kind === 'value' && v.charAt(caret) !== '"') insert += '"';
      if ((item.kind === 'function' || item.kind === 'aggregation') && v.charAt(caret) !== '(') insert += '(';
      this.input.value = v.slice(0, start) + insert + v.slice(caret);
      const pos = start + insert.length;
      this.input.setSelectionRange(pos, pos);
      this.closeCompletion();
      this.autosize();
      this.input.focus();
    }

    // ---- Queries ----
    execute() {
      this.state.expr = this.input.value;
      this.onChange();
      if (!this.state.expr.trim()) return;
      const seq = ++this.seq;
      this.showError(null);
      this.root.dataset.state = 'loading';
      const started = performance.now();
      const run = this.state.tab === 1 ? this.runTable(seq) : this.runGraph(seq);
      run.then(() => {
        if (seq === this.seq) this.root.dataset.state = 'done';
      }, (e) => {
        if (seq !== this.seq) return;
        this.showError(e.message);
        this.stats.textContent = 'Load time: ' + Math.round(performance.now() - started) + 'ms';
        this.root.dataset.state = 'error';
      });
    }

    showError(msg) {
      T.clear(this.errorBox);
      this.errorBox.hidden = msg === null;
      if (msg === null) return;
      this.errorBox.append(T.errorBox('Error executing query: ' + msg));
      // "[invalid parameter "query": ]line:column: parse error: ..." → the expression's line
      // with a caret under the column.
      const m = /(?:^|: )(\d+):(\d+): parse error/.exec(msg);
      if (m) {
        const line = this.state.expr.split('\n')[+m[1] - 1];
        if (line !== undefined) {
          this.errorBox.append(el('pre', { class: 'error-position' }, line + '\n' + ' '.repeat(Math.max(0, +m[2] - 1)) + '^'));
        }
      }
    }

    showWarnings(ws) {
      T.clear(this.warnBox);
      this.warnBox.hidden = !ws || !ws.length;
      for (const w of ws || []) this.warnBox.append(el('div', { class: 'alert warning' }, 'Warning: ' + w));
    }

    async runTable(seq) {
      const s = this.state;
      const started = performance.now();
      const params = { query: s.expr };
      if (s.end !== null) params.time = s.end / 1000;
      const body = await T.api('/api/v1/query', params, 'POST');
      if (seq !== this.seq) return;
      this.showWarnings(body.warnings);
      const r = body.data;
      T.clear(this.tableBox);
      let rows = [];
      let total = 0;
      const row = (name, value) => el('tr', null, el('td', { class: 'series' }, name), el('td', { class: 'value' }, value));
      if (r.resultType === 'vector') {
        total = r.result.length;
        rows = r.result.slice(0, MAX_TABLE_ROWS).map((x) => row(T.seriesName(x.metric),
          x.histogram ? histogramText(x.histogram[1]) : x.value[1]));
      } else if (r.resultType === 'matrix') {
        total = r.result.length;
        rows = r.result.slice(0, MAX_TABLE_ROWS).map((x) => row(T.seriesName(x.metric),
          (x.values || []).map((v) => v[1] + ' @' + v[0]).join('\n')));
      } else if (r.resultType === 'scalar' || r.resultType === 'string') {
        total = 1;
        rows = [row(r.resultType, r.result[1])];
      }
      if (total > MAX_TABLE_ROWS) {
        this.tableBox.append(el('div', { class: 'notice' }, 'Showing the first ' + MAX_TABLE_ROWS + ' of ' + total + ' series.'));
      }
      this.tableBox.append(rows.length
        ? el('table', { class: 'grid result' }, el('tbody', null, rows))
        : el('p', { class: 'muted empty' }, 'Empty query result'));
      this.stats.textContent = 'Load time: ' + Math.round(performance.now() - started) + 'ms   Result series: ' + total;
    }

    async runGraph(seq) {
      const s = this.state;
      const started = performance.now();
      const end = s.end === null ? Date.now() : s.end;
      const rangeS = s.range / 1000;
      let step = s.step || defaultStep(s.range);
      let note = '';
      if (rangeS / step + 1 > MAX_POINTS) {
        step = Math.ceil(rangeS / (MAX_POINTS - 1));
        note = 'Resolution raised to ' + step + 's: at most ' + MAX_POINTS + ' points per series. ';
      }
      const endS = end / 1000;
      const startS = endS - rangeS;
      const body = await T.api('/api/v1/query_range', { query: s.expr, start: startS, end: endS, step }, 'POST');
      if (seq !== this.seq) return;
      const arrived = body.receivedAt;
      this.showWarnings(body.warnings);
      const r = body.data;
      if (r.resultType !== 'matrix') throw new Error('unexpected result type ' + r.resultType + ' for a range query');
      const total = r.result.length;
      const result = r.result.slice(0, MAX_GRAPH_SERIES);
      if (total > MAX_GRAPH_SERIES) note += 'Showing the first ' + MAX_GRAPH_SERIES + ' of ' + total + ' series. ';
      this.notice.textContent = note;
      this.notice.hidden = !note;
      this.draw(result, startS, endS, step, arrived);
      this.root.dataset.parseMs = (body.parsedAt - arrived).toFixed(1);
      this.stats.textContent = 'Load time: ' + Math.round(performance.now() - started) + 'ms   Resolution: ' + step + 's   Result series: ' + total;
    }

    // ---- The graph ----
    draw(result, startS, endS, step, arrived) {
      if (this.chart) {
        this.chart.destroy();
        this.chart = null;
      }
      this.hidden.clear();
      T.clear(this.legend);
      this.tooltip.hidden = true;
      delete this.root.dataset.renderMs;
      delete this.root.dataset.parseMs;
      if (result.length === 0) {
        this.chartBox.replaceChildren(el('p', { class: 'muted empty' }, 'No data points found.'));
        return;
      }
      T.clear(this.chartBox);
      // The x axis: the steps the API evaluated (start + k*step); every series on that grid.
      const n = Math.floor((endS - startS) / step + 1e-9) + 1;
      const xs = new Float64Array(n);
      for (let i = 0; i < n; i++) xs[i] = startS + i * step;
      const raw = result.map((series) => {
        const ys = new Array(n).fill(null);
        for (const [t, v] of series.values || []) {
          const i = Math.round((t - startS) / step);
          const y = sampleValue(v);
          if (i >= 0 && i < n && isFinite(y)) ys[i] = y;
        }
        return ys;
      });
      this.raw = raw;
      this.names = result.map((x) => T.seriesName(x.metric));
      this.xs = xs;
      const stacked = this.state.stacked;
      const opts = {
        width: Math.max(300, this.chartBox.clientWidth || this.root.clientWidth - 20),
        height: 380,
        scales: { x: { time: true } },
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
        legend: { show: false },
        cursor: { drag: { x: true, y: false, setScale: false }, focus: { prox: 24 }, points: { size: 7 } },
        focus: { alpha: 0.35 },
        series: [{}].concat(result.map((_, i) => ({
          label: this.names[i],
          stroke: color(i),
          width: 1.25,
          fill: stacked ? color(i, 0.45) : undefined,
          points: { show: false },
        }))),
        axes: [{}, { size: 64, values: (u, vals) => vals.map(fmtValue) }],
        hooks: {
          setSelect: [(u) => this.zoom(u)],
          setCursor: [(u) => this.hover(u)],
          draw: [() => {
            if (!this.root.dataset.renderMs && arrived) {
              const ms = performance.now() - arrived;
              this.root.dataset.renderMs = ms.toFixed(1);
              this.root.dataset.renderPoints = String(n * result.length);
            }
          }],
        },
      };
      if (stacked) opts.bands = result.slice(1).map((_, i) => ({ series: [i + 2, i + 1] }));
      this.chart = new uPlot(opts, this.chartData(), this.chartBox);
      this.buildLegend();
    }

    // Lines: the values; stacked: running sums of the shown series (hidden ones add nothing).
    chartData() {
      if (!this.state.stacked) return [this.xs].concat(this.raw);
      const acc = new Array(this.xs.length).fill(0);
      return [this.xs].concat(this.raw.map((ys, i) => {
        if (this.hidden.has(i)) return ys.map(() => null);
        return ys.map((y, k) => { acc[k] += y === null ? 0 : y; return acc[k]; });
      }));
    }

    buildLegend() {
      this.names.forEach((name, i) => {
        const item = el('div', {
          class: 'legend-item', title: 'Click: hide/show. Ctrl+click: show only this series.',
          onclick: (e) => this.toggleSeries(i, e.ctrlKey || e.metaKey),
        }, el('span', { class: 'swatch', dataset: { i: String(i) } }), el('span', { class: 'legend-text' }, name));
        this.legend.append(item);
      });
      // The swatch colors, set through the CSSOM (the CSP forbids style attributes).
      for (const sw of this.legend.querySelectorAll('.swatch')) sw.style.backgroundColor = color(+sw.dataset.i);
    }

    toggleSeries(i, only) {
      if (only) {
        const alone = this.hidden.size === this.names.length - 1 && !this.hidden.has(i);
        this.hidden.clear();
        if (!alone) this.names.forEach((_, k) => { if (k !== i) this.hidden.add(k); });
      } else if (this.hidden.has(i)) this.hidden.delete(i);
      else this.hidden.add(i);
      const items = this.legend.children;
      this.names.forEach((_, k) => {
        const show = !this.hidden.has(k);
        items[k].classList.toggle('off', !show);
        if (this.chart.series[k + 1].show !== show) this.chart.setSeries(k + 1, { show });
      });
      if (this.state.stacked) this.chart.setData(this.chartData());
    }

    // A selected time span becomes the new range and end, and the query runs again.
    zoom(u) {
      if (u.select.width < 3) return;
      const min = u.posToVal(u.select.left, 'x');
      const max = u.posToVal(u.select.left + u.select.width, 'x');
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      if (!(max > min)) return;
      this.state.range = Math.max(1000, Math.round((max - min) * 1000));
      this.state.end = Math.round(max * 1000);
      this.changed();
    }

    // Time and value of the series nearest the cursor.
    hover(u) {
      const idx = u.cursor.idx;
      const top = u.cursor.top;
      if (idx === null || idx === undefined || top === null || top < 0) {
        this.tooltip.hidden = true;
        return;
      }
      let best = -1;
      let bestDist = Infinity;
      const data = u.data;
      for (let s = 1; s < data.length; s++) {
        if (!u.series[s].show) continue;
        const v = data[s][idx];
        if (v === null || v === undefined) continue;
        const d = Math.abs(u.valToPos(v, 'y') - top);
        if (d < bestDist) {
          bestDist = d;
          best = s;
        }
      }
      if (best < 0) {
        this.tooltip.hidden = true;
        return;
      }
      const value = this.raw[best - 1][idx];
      T.clear(this.tooltip);
      this.tooltip.append(
        el('div', { class: 'tt-time' }, T.fmtTime(data[0][idx] * 1000)),
        el('div', { class: 'tt-series' }, el('span', { class: 'swatch', dataset: { i: String(best - 1) } }), this.names[best - 1]),
        el('div', { class: 'tt-value' }, 'value: ' + fmtValue(value)));
      this.tooltip.querySelector('.swatch').style.backgroundColor = color(best - 1);
      this.tooltip.hidden = false;
      const left = u.cursor.left + u.over.offsetLeft;
      const flip = left > u.over.clientWidth / 2;
      this.tooltip.style.left = (flip ? left - this.tooltip.offsetWidth - 12 : left + 12) + 'px';
      this.tooltip.style.top = (u.valToPos(data[best][idx], 'y') + u.over.offsetTop + 8) + 'px';
    }

    resize() {
      if (this.chart && !this.graphPane.hidden) {
        this.chart.setSize({ width: Math.max(300, this.chartBox.clientWidth), height: 380 });
      }
    }

    // The graph's canvas on a white background, downloaded as PNG.
    savePng() {
      if (!this.chart) return;
      const src = this.chart.ctx.canvas;
      const c = document.createElement('canvas');
      c.width = src.width;
      c.height = src.height;
      const ctx = c.getContext('2d');
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.drawImage(src, 0, 0);
      const a = el('a', { href: c.toDataURL('image/png'), download: 'graph.png' });
      document.body.append(a);
      a.click();
      a.remove();
    }
  }

  // Prometheus' default resolution: max(floor(range / 250), 1) seconds.
  function defaultStep(rangeMs) {
    return Math.max(Math.floor(rangeMs / 1000 / 250), 1);
  }

  function histogramText(h) {
    if (!h) return '';
    return 'count: ' + h.count + ', sum: ' + h.sum;
  }
})();
