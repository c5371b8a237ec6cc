// tsdb web UI: shared helpers and the read-only pages (targets, alerts, rules, status, config,
// flags, TSDB status). The expression browser is graph.js.
//
// Safety rule of this file and graph.js: data from the server (label values, annotations, errors,
// configuration text) enters the page only as text — through el()/text nodes/textContent — and
// never as markup; links are only made from http(s) URLs. The server's Content-Security-Policy
// allows no inline script, so this holds even if a value looks like HTML.
'use strict';

(function () {
  const T = (window.TSDB = { pages: {} });

  // el('td', {class: 'x', title: 'y', onclick: f}, child, 'text', [more]) builds an element;
  // strings become text nodes.
  T.el = function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (k === 'value' || k === 'checked' || k === 'disabled') e[k] = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    T.append(e, children);
    return e;
  };

  T.append = function append(parent, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.append(c instanceof Node ? c : String(c));
    }
    return parent;
  };

  T.clear = function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
    return e;
  };

  // An <a> for an http(s) URL from the server; anything else (javascript:, data:) stays text.
  T.link = function link(url, text) {
    return /^https?:\/\//i.test(url) ? T.el('a', { href: url, rel: 'noreferrer' }, text) : T.el('span', null, text);
  };

  // Calls the HTTP API; resolves to its JSON body ({status, data, warnings}), rejects with an
  // Error carrying the API's error text (and errorType).
  T.api = async function api(path, params, method) {
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) v.forEach((x) => body.append(k, x));
      else if (v !== null && v !== undefined && v !== '') body.append(k, String(v));
    }
    let url = path;
    const init = { credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method === 'POST') {
      init.method = 'POST';
      init.body = body;
    } else if ([...body.keys()].length) {
      url += '?' + body.toString();
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      throw new Error('cannot reach the server: ' + e.message);
    }
    const text = await resp.text();
    const received = performance.now();
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error('HTTP ' + resp.status + ': ' + text.slice(0, 300));
    }
    if (json.status !== 'success') {
      const err = new Error(json.error || 'HTTP ' + resp.status);
      err.errorType = json.errorType;
      throw err;
    }
    json.receivedAt = received;
    json.parsedAt = performance.now();
    return json;
  };

  const pad = (n, w) => String(n).padStart(w || 2, '0');

  // UTC "YYYY-MM-DD HH:mm:ss" — the format of Prometheus' g0.end_input.
  T.fmtInputTime = function (ms) {
    const d = new Date(ms);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  };

  T.fmtTime = function (ms) {
    if (!isFinite(ms)) return '-';
    return T.fmtInputTime(ms) + '.' + pad(new Date(ms).getUTCMilliseconds(), 3) + ' UTC';
  };

  // "YYYY-MM-DD[ T]HH:mm[:ss[.sss]]" in UTC (or anything Date parses, e.g. RFC 3339) → ms.
  T.parseInputTime = function (s) {
    s = (s || '').trim();
    if (!s) return null;
    const m = /^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,3}))?)?)?$/.exec(s);
    if (m) {
      return Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0),
        +((m[7] || '0') + '00').slice(0, 3));
    }
    if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s) * 1000; // Unix seconds
    const t = Date.parse(s);
    return isNaN(t) ? NaN : t;
  };

  // Prometheus durations: "1h30m", "15s", "2w", "500ms" → ms (NaN if invalid).
  const UNITS = { y: 31536e6, w: 6048e5, d: 864e5, h: 36e5, m: 6e4, s: 1e3, ms: 1 };
  T.parseDuration = function (s) {
    s = (s || '').trim();
    if (!/^(\d+(ms|[ywdhms]))+$/.test(s)) return NaN;
    let ms = 0;
    for (const m of s.matchAll(/(\d+)(ms|[ywdhms])/g)) ms += +m[1] * UNITS[m[2]];
    return ms;
  };

  T.fmtDuration = function (ms) {
    if (!(ms > 0)) return '0s';
    let out = '';
    for (const u of ['y', 'w', 'd', 'h', 'm', 's', 'ms']) {
      const n = Math.floor(ms / UNITS[u]);
      if (n > 0) {
        out += n + u;
        ms -= n * UNITS[u];
      }
    }
    return out;
  };

  T.ago = function (iso) {
    const t = Date.parse(iso);
    if (isNaN(t) || t <= 0) return 'never';
    const s = (Date.now() - t) / 1000;
    if (s < 0) return 'in ' + (-s).toFixed(3) + 's';
    if (s < 60) return s.toFixed(3) + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + Math.floor(s % 60) + 's ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm ago';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h ago';
  };

  T.fmtSeconds = function (s) {
    if (typeof s !== 'number' || !isFinite(s)) return '-';
    if (s < 1) return (s * 1000).toFixed(3) + 'ms';
    return s.toFixed(3) + 's';
  };

  // {a: "x", b: "y"} → one <span class="label"> per pair, each as text.
  T.labelBadges = function (labels) {
    return Object.keys(labels || {})
      .sort()
      .map((k) => T.el('span', { class: 'label' }, k + '="' + labels[k] + '"'));
  };

  // metric{a="x", b="y\"z"} — label values escaped as PromQL string literals.
  T.seriesName = function (metric) {
    const name = metric.__name__ || '';
    const parts = Object.keys(metric)
      .filter((k) => k !== '__name__')
      .sort()
      .map((k) => k + '=' + JSON.stringify(metric[k]));
    return name + '{' + parts.join(', ') + '}';
  };

  T.errorBox = function (msg) {
    return T.el('div', { class: 'alert error', role: 'alert' }, msg);
  };

  T.table = function (head, rows, cls) {
    return T.el('table', { class: cls || 'grid' },
      T.el('thead', null, T.el('tr', null, head.map((h) => T.el('th', null, h)))),
      T.el('tbody', null, rows));
  };

  T.kvTable = function (pairs) {
    return T.el('table', { class: 'grid kv' },
      T.el('tbody', null, pairs.map(([k, v]) => T.el('tr', null, T.el('th', null, k), T.el('td', null, v)))));
  };

  // Runs `render(main)` for a page that loads its data with `load()`, showing errors as text.
  async function loadPage(main, title, load, render) {
    T.append(main, [T.el('h1', null, title)]);
    const status = T.el('p', { class: 'muted' }, 'Loading…');
    main.append(status);
    try {
      const data = await load();
      status.remove();
      render(main, data);
    } catch (e) {
      status.replaceWith(T.errorBox('Error loading ' + title.toLowerCase() + ': ' + e.message));
    }
  }

  // ---- Targets ----
  T.pages.targets = function (main) {
    let onlyUnhealthy = false;
    let data = null;
    const box = T.el('div');
    const redraw = () => {
      T.clear(box);
      const pools = new Map();
      for (const t of data.activeTargets || []) {
        if (!pools.has(t.scrapePool)) pools.set(t.scrapePool, []);
        pools.get(t.scrapePool).push(t);
      }
      if (pools.size === 0) box.append(T.el('p', { class: 'muted' }, 'No targets.'));
      for (const [pool, targets] of pools) {
        const up = targets.filter((t) => t.health === 'up').length;
        const shown = onlyUnhealthy ? targets.filter((t) => t.health !== 'up') : targets;
        if (shown.length === 0) continue;
        const rows = shown.map((t) => T.el('tr', { class: 'target' },
          T.el('td', null, T.link(t.scrapeUrl, t.scrapeUrl)),
          T.el('td', null, T.el('span', { class: 'state state-' + t.health }, t.health.toUpperCase())),
          T.el('td', { class: 'labels' }, T.labelBadges(t.labels)),
          T.el('td', { title: t.lastScrape }, T.ago(t.lastScrape)),
          T.el('td', null, T.fmtSeconds(t.lastScrapeDuration)),
          T.el('td', { class: 'error-text' }, t.lastError || '')));
        box.append(T.el('section', { class: 'pool', dataset: { pool } },
          T.el('h2', null, pool + ' ', T.el('span', { class: up === targets.length ? 'count ok' : 'count bad' },
            '(' + up + '/' + targets.length + ' up)')),
          T.table(['Endpoint', 'State', 'Labels', 'Last Scrape', 'Scrape Duration', 'Error'], rows)));
      }
    };
    loadPage(main, 'Targets', () => T.api('/api/v1/targets', { state: 'active' }), (m, body) => {
      data = body.data;
      m.append(T.el('div', { class: 'toolbar' },
        T.el('label', null, T.el('input', { type: 'checkbox', onchange: (e) => { onlyUnhealthy = e.target.checked; redraw(); } }),
          ' Unhealthy only')), box);
      redraw();
    });
  };

  // ---- Alerts (alerting rules with their alerts, as Prometheus' page: /api/v1/rules?type=alert) ----
  const STATES = ['inactive', 'pending', 'firing'];
  T.pages.alerts = function (main) {
    loadPage(main, 'Alerts', () => T.api('/api/v1/rules', { type: 'alert' }), (m, body) => {
      const rules = [];
      for (const g of body.data.groups || []) {
        for (const r of g.rules || []) if (r.type === 'alerting') rules.push({ group: g, rule: r });
      }
      const show = { inactive: true, pending: true, firing: true };
      const counts = { inactive: 0, pending: 0, firing: 0 };
      rules.forEach(({ rule }) => { counts[rule.state] = (counts[rule.state] || 0) + 1; });
      const list = T.el('div');
      const redraw = () => {
        T.clear(list);
        const order = (r) => -STATES.indexOf(r.rule.state);
        const shown = rules.filter((r) => show[r.rule.state] !== false).sort((a, b) => order(a) - order(b));
        if (shown.length === 0) list.append(T.el('p', { class: 'muted' }, rules.length ? 'No alerts in the selected states.' : 'No alerting rules.'));
        for (const { group, rule } of shown) list.append(alertRule(group, rule));
      };
      m.append(T.el('div', { class: 'toolbar' }, STATES.map((s) => T.el('label', { class: 'state-filter' },
        T.el('input', { type: 'checkbox', checked: true, onchange: (e) => { show[s] = e.target.checked; redraw(); } }),
        ' ', T.el('span', { class: 'state state-' + s }, s.charAt(0).toUpperCase() + s.slice(1) + ' (' + (counts[s] || 0) + ')')))), list);
      redraw();
    });
  };

  function alertRule(group, rule) {
    const alerts = rule.alerts || [];
    const details = T.el('details', { class: 'rule state-box-' + rule.state, open: rule.state !== 'inactive' });
    details.append(
      T.el('summary', null, T.el('span', { class: 'state state-' + rule.state }, rule.state.toUpperCase()), ' ',
        T.el('strong', { class: 'rule-name' }, rule.name), ' (' + alerts.length + ' active)',
        T.el('span', { class: 'muted' }, '  ' + (group.file || '') + ' > ' + group.name)),
      T.el('pre', { class: 'rule-def' }, ruleYaml(rule)));
    if (alerts.length) {
      details.append(T.table(['Labels', 'State', 'Active Since', 'Value', 'Annotations'], alerts.map((a) => T.el('tr', { class: 'alert-row' },
        T.el('td', { class: 'labels' }, T.labelBadges(a.labels)),
        T.el('td', null, T.el('span', { class: 'state state-' + a.state }, a.state.toUpperCase())),
        T.el('td', { title: a.activeAt }, a.activeAt ? T.fmtTime(Date.parse(a.activeAt)) : '-'),
        T.el('td', null, a.value),
        T.el('td', { class: 'annotations' }, Object.keys(a.annotations || {}).sort().map((k) => T.el('div', null, T.el('b', null, k + ': '), a.annotations[k])))))));
    }
    return details;
  }

  // A rule as the YAML an operator wrote, for display (text only).
  function ruleYaml(rule) {
    const lines = [(rule.type === 'alerting' ? 'alert: ' : 'record: ') + rule.name, 'expr: ' + rule.query];
    if (rule.duration) lines.push('for: ' + T.fmtDuration(rule.duration * 1000));
    const map = (key, obj) => {
      const ks = Object.keys(obj || {}).sort();
      if (!ks.length) return;
      lines.push(key + ':');
      ks.forEach((k) => lines.push('  ' + k + ': ' + JSON.stringify(obj[k])));
    };
    map('labels', rule.labels);
    map('annotations', rule.annotations);
    return lines.join('\n');
  }

  // ---- Rules ----
  T.pages.rules = function (main) {
    loadPage(main, 'Rules', () => T.api('/api/v1/rules'), (m, body) => {
      const groups = body.data.groups || [];
      if (!groups.length) m.append(T.el('p', { class: 'muted' }, 'No rule groups.'));
      for (const g of groups) {
        m.append(T.el('section', { class: 'rule-group' },
          T.el('h2', null, g.name, T.el('span', { class: 'muted' }, '  ' + (g.file || ''))),
          T.el('p', { class: 'muted' }, 'interval ' + T.fmtDuration((g.interval || 0) * 1000) +
            ', last evaluation ' + T.ago(g.lastEvaluation) + ', took ' + T.fmtSeconds(g.evaluationTime)),
          T.table(['Rule', 'State', 'Error', 'Last Evaluation', 'Evaluation Time'], (g.rules || []).map((r) => T.el('tr', { class: 'rule-row' },
            T.el('td', null, T.el('pre', { class: 'rule-def' }, ruleYaml(r))),
            T.el('td', null, T.el('span', { class: 'state state-' + (r.health === 'ok' ? 'up' : r.health === 'err' ? 'down' : 'unknown') }, String(r.health).toUpperCase())),
            T.el('td', { class: 'error-text' }, r.lastError || ''),
            T.el('td', { title: r.lastEvaluation }, T.ago(r.lastEvaluation)),
            T.el('td', null, T.fmtSeconds(r.evaluationTime)))))));
      }
    });
  };

  // ---- Status ----
  T.pages.status = function (main) {
    loadPage(main, 'Status', () => Promise.all([
      T.api('/api/v1/status/buildinfo'), T.api('/api/v1/status/runtimeinfo'), T.api('/api/v1/alertmanagers'),
    ]), (m, [build, rt, am]) => {
      const r = rt.data;
      m.append(T.el('h2', null, 'Runtime Information'), T.kvTable([
        ['Start time', T.fmtTime(Date.parse(r.startTime))],
        ['Working directory', r.CWD],
        ['Configuration reload', r.reloadConfigSuccess ? 'Successful' : 'Unsuccessful'],
        ['Last successful configuration reload', T.fmtTime(Date.parse(r.lastConfigTime))],
        ['Tasks', String(r.goroutineCount)],
        ['Threads (GOMAXPROCS)', String(r.GOMAXPROCS)],
        ['Storage retention', r.storageRetention],
      ]));
      const b = build.data;
      m.append(T.el('h2', null, 'Build Information'), T.kvTable([
        ['Version', b.version], ['Revision', b.revision], ['Branch', b.branch],
        ['Build user', b.buildUser], ['Build date', b.buildDate], ['Toolchain', b.goVersion],
      ]));
      const active = (am.data.activeAlertmanagers || []).map((a) => T.el('tr', null, T.el('td', null, T.link(a.url, a.url))));
      m.append(T.el('h2', null, 'Alertmanagers'),
        active.length ? T.table(['Endpoint'], active) : T.el('p', { class: 'muted' }, 'None.'));
    });
  };

  // ---- Configuration ----
  T.pages.config = function (main) {
    loadPage(main, 'Configuration', () => T.api('/api/v1/status/config'), (m, body) => {
      m.append(T.el('pre', { class: 'config' }, body.data.yaml));
    });
  };

  // ---- Flags ----
  T.pages.flags = function (main) {
    loadPage(main, 'Command-Line Flags', () => T.api('/api/v1/status/flags'), (m, body) => {
      const names = Object.keys(body.data).sort();
      const tbody = T.el('tbody');
      const redraw = (filter) => {
        T.clear(tbody);
        const f = filter.toLowerCase();
        T.append(tbody, names.filter((n) => !f || n.toLowerCase().includes(f) || String(body.data[n]).toLowerCase().includes(f))
          .map((n) => T.el('tr', null, T.el('td', null, '--' + n), T.el('td', null, body.data[n]))));
      };
      m.append(T.el('input', { class: 'filter', type: 'search', placeholder: 'Filter by flag name or value', oninput: (e) => redraw(e.target.value) }),
        T.el('table', { class: 'grid' }, T.el('thead', null, T.el('tr', null, T.el('th', null, 'Flag'), T.el('th', null, 'Value'))), tbody));
      redraw('');
    });
  };

  // ---- TSDB status ----
  T.pages['tsdb-status'] = function (main) {
    loadPage(main, 'TSDB Status', () => T.api('/api/v1/status/tsdb'), (m, body) => {
      const d = body.data;
      const h = d.headStats || {};
      m.append(T.el('h2', null, 'Head Stats'), T.table(['Number of Series', 'Number of Chunks', 'Number of Label Pairs', 'Current Min Time', 'Current Max Time'], [
        T.el('tr', null, T.el('td', null, String(h.numSeries)), T.el('td', null, String(h.chunkCount)), T.el('td', null, String(h.numLabelPairs)),
          T.el('td', null, T.fmtTime(h.minTime) + ' (' + h.minTime + ')'), T.el('td', null, T.fmtTime(h.maxTime) + ' (' + h.maxTime + ')')),
      ]));
      const top = (title, list, col) => {
        m.append(T.el('h2', null, title), T.table(['Name', col], (list || []).map((x) => T.el('tr', null, T.el('td', null, x.name), T.el('td', null, String(x.value))))));
      };
      top('Top 10 series count by metric names', d.seriesCountByMetricName, 'Count');
      top('Top 10 label names with value count', d.labelValueCountByLabelName, 'Count');
      top('Top 10 label names with high memory usage', d.memoryInBytesByLabelName, 'Bytes');
      top('Top 10 series count by label value pairs', d.seriesCountByLabelValuePair, 'Count');
    });
  };

  // Dispatch on the path (the server serves the same document at every page's path).
  document.addEventListener('DOMContentLoaded', () => {
    const page = location.pathname.replace(/\/+$/, '').split('/').pop() || 'graph';
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === page) a.classList.add('active');
    }
    const render = T.pages[page];
    const main = document.getElementById('main');
    T.clear(main);
    document.body.dataset.page = page;
    document.title = 'tsdb · ' + page;
    if (render) render(main);
    else main.append(T.errorBox('Unknown page: ' + page));
  });
})();
