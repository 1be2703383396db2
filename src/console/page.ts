/**
 * The deployment console's page, stylesheet and script, kept as strings so they ship inside the compiled
 * service (the image holds dist/ only). The page holds no data: the script asks for the admin token once,
 * keeps it in sessionStorage and sends it as a Bearer header; it builds the DOM with textContent only, so
 * nothing a region reports (an IdP's error message, say) is ever parsed as HTML.
 */

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Deployment console</title>
<link rel="stylesheet" href="/admin/console.css">
<link rel="icon" href="/admin/console.svg" type="image/svg+xml">
<script src="/admin/console.js" defer></script>
</head>
<body>
<header>
  <h1>Deployment console</h1>
  <span id="meta"></span>
  <button id="forget" type="button" hidden>Forget token</button>
</header>
<form id="login" hidden>
  <label>Admin token <input id="token" type="password" autocomplete="off" required></label>
  <button type="submit">Open</button>
  <span id="login-error" class="bad" role="alert"></span>
</form>
<main id="console" hidden>
  <section>
    <h2>Regions <small>* serves this page; every figure refreshes every 3 s</small></h2>
    <table id="regions">
      <thead><tr>
        <th scope="col">Region</th><th scope="col">State</th><th scope="col">Answer</th><th scope="col">Redis</th><th scope="col" title="unpublished / unconfirmed: deliveries not yet recorded / delivered but not yet applied everywhere (their sum: not yet confirmed by every region)">Outbox</th>
        <th scope="col" title="stream entries not yet delivered / delivered but not acknowledged">Backlog</th>
        <th scope="col" title="failing / parked">Refused</th><th scope="col" title="entries of the dead-letter stream in the region's Redis (one stream per Redis: regions sharing one show the same); see docs/security.md, Refused entries">Dead letters</th><th scope="col">Waiting requests</th><th scope="col">Metadata failing</th><th scope="col">Problems</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Replication lag <small>origin (row) &rarr; region (column): how far behind the origin's newest event</small></h2>
    <table id="lag"><thead></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Failing metadata refreshes and expired metadata</h2>
    <ul id="refresh-failures"></ul>
  </section>
  <section>
    <h2>Follow a change</h2>
    <form id="follow">
      <label for="change-id">Change id</label>
      <input id="change-id" placeholder="X-Change-Id of a write" size="40" autocomplete="off" spellcheck="false">
      <button type="submit">Follow</button>
    </form>
    <div id="change" aria-live="polite"></div>
  </section>
</main>
</body>
</html>
`;

export const CONSOLE_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 1.5rem; color: #1b1f23; }
header { display: flex; align-items: baseline; gap: 1rem; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; } h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
h2 small { font-weight: normal; color: #586069; }
table { border-collapse: collapse; } th, td { border: 1px solid #d1d5da; padding: .25rem .5rem; text-align: left; }
th { background: #f6f8fa; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #116329; } .warn { color: #9a6700; } .bad { color: #cf222e; }
td.ok { background: #dafbe1; } td.warn { background: #fff8c5; } td.bad { background: #ffebe9; } td.none { color: #57606a; } main.stale table { opacity: .5; }
#meta { color: #586069; } ul { margin: 0; padding-left: 1.2rem; }
section { overflow-x: auto; }
@media (max-width: 600px) {
  body { margin: .5rem; font-size: 13px; } header { flex-wrap: wrap; gap: .5rem; }
  th, td { padding: .2rem .3rem; } #change-id { width: 100%; box-sizing: border-box; }
}
`;

/** The page's icon (a browser asks for one; without it, /favicon.ico answered 404 in the log). */
export const CONSOLE_ICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#116329"/><path d="M4 8h8M8 4v8" stroke="#fff" stroke-width="2"/></svg>';

// Plain ES2017 for any current browser; no template literals (this file is one).
export const CONSOLE_JS = String.raw`(function () {
  'use strict';
  var KEY = 'saml-console-admin-token';
  var REFRESH_MS = 3000;
  var API_TIMEOUT_MS = 10000;
  var timer = null;
  var followed = null;
  // Bumped at each login and each logout: an answer to a request of an earlier one is dropped. Handled, a
  // mistyped token's late 401 sent the operator back to the login, the right token just entered wiped.
  var session = 0;
  var byId = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'class') e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c !== null) e.appendChild(c); });
    return e;
  }
  // Changes held only for this region's upgrade are expected during a rolling upgrade: shown, but not as a fault.
  function refusedCell(rep) {
    if (!rep) return td(null, 'num');
    const upgradeOnly = rep.failing === 0 && rep.parked > 0 && rep.parked_for_upgrade === rep.parked;
    const cell = td(rep.failing + ' / ' + rep.parked, upgradeOnly ? 'num warn' : rep.failing + rep.parked > 0 ? 'num bad' : 'num');
    if (rep.parked_for_upgrade > 0) cell.title = rep.parked_for_upgrade + ' of the parked held until this region is upgraded (expected during a rolling upgrade)';
    return cell;
  }
  // A figure the serving region could not read (the region's consumer group is not there yet, or the Redis
  // holding it did not answer) is null: shown as ?, and both unread as no figure at all (it read "null / null").
  function backlogCell(b, state) {
    if (!b || (b.undelivered === null && b.pending_acks === null)) return td(null, 'num');
    var shown = function (n) { return n === null ? '?' : String(n); };
    var cell = td((b.undelivered_is_bound ? '\u2264 ' : '') + shown(b.undelivered) + ' / ' + shown(b.pending_acks), state === 'lagging' || state === 'down' ? 'num warn' : 'num');
    if (b.undelivered === null || b.pending_acks === null) cell.title = '?: not counted (the Redis holding this region\'s inbox did not tell)';
    return cell;
  }
  function td(text, cls) { return el('td', { text: text === null || text === undefined ? '—' : String(text), class: cls || '' }); }
  function ms(v) {
    if (v === null || v === undefined) return '—';
    if (v < 1000) return v + ' ms';
    if (v < 60000) return (v / 1000).toFixed(1) + ' s';
    return Math.round(v / 60000) + ' min';
  }
  function token() { return sessionStorage.getItem(KEY); }
  // What fetch would refuse to send (a character beyond Latin-1, such as a zero-width space pasted with the
  // token, or a control character), named; null when the token can be sent. Sent anyway, every request failed
  // before leaving the page, which then said the region did not answer, every 3 s.
  function unsendable(value) {
    try {
      new Headers({ Authorization: 'Bearer ' + value });
      return null;
    } catch (e) {
      var bad = Array.from(value).find(function (c) { var n = c.codePointAt(0); return n > 0xff || n < 0x20 || n === 0x7f; });
      return bad ? 'U+' + bad.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') : 'a character';
    }
  }
  function api(path) {
    // Bounded: a region that hangs (stopped, its connection open) would otherwise leave the page on its
    // last figures without a word.
    return fetch(path, { headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store', signal: AbortSignal.timeout(API_TIMEOUT_MS) });
  }

  function showLogin(message) {
    session++;
    clearTimeout(timer);
    sessionStorage.removeItem(KEY);
    byId('console').hidden = true;
    byId('forget').hidden = true;
    byId('login').hidden = false;
    byId('login-error').textContent = message || '';
    byId('token').focus();
  }

  // Green only on what was read: a figure the serving region could not read (null: a status call of the region
  // timed out, failed or answered in a form this version does not read) is not taken for a good one. Read as
  // good, a region whose /readyz did not answer showed green "up"; its problems said why.
  function regionState(r, lag) {
    // A member this region's config lacks: no address, so no figures (its problem says so).
    if (!r.url) return 'unknown';
    if (!r.up) return 'down';
    if (r.ready === false) return 'not-ready';
    // Its Redis not answering: no change reaches it or leaves it, while its backlog and lag cells may read clean
    // (nothing moves). It serves its own reads and writes. Judged by the serving region alone (redis_down, the
    // reason its problem names), so the row and its problem cannot disagree.
    if (typeof r.redis_down === 'string') return 'isolated';
    if (r.ready !== true) return 'ready?';
    var b = r.backlog;
    var counted = b ? [b.undelivered, b.pending_acks].filter(function (n) { return n !== null && n !== undefined; }) : [];
    var backlog = counted.reduce(function (sum, n) { return sum + n; }, 0);
    var behind = lag.some(function (c) { return c.region === r.id && c.state === 'behind'; });
    if (backlog > 0 || behind) return 'lagging';
    // Its replication status unread (its failures, outbox and lag cells unknown), or its backlog not counted.
    return !r.replication || counted.length < 2 ? 'lag?' : 'up';
  }
  var STATE_CLASS = { up: 'ok', lagging: 'warn', 'lag?': 'warn', 'ready?': 'warn', isolated: 'bad', 'not-ready': 'bad', down: 'bad', unknown: 'warn' };

  function renderRegions(d) {
    var body = byId('regions').tBodies[0];
    body.replaceChildren();
    d.regions.forEach(function (r) {
      var state = regionState(r, d.lag);
      var rep = r.replication;
      var meta = r.metadata_refresh;
      var row = el('tr', { 'data-region': r.id, 'data-state': state }, [
        el('th', { scope: 'row', text: r.id + (r.id === d.region ? ' *' : ''), title: r.url + (r.id === d.region ? ' (serves this page)' : '') }),
        td(state, STATE_CLASS[state]),
        td(r.up ? ms(r.response_ms) : null, 'num'),
        td(r.redis, r.redis && r.redis !== 'ready' ? 'bad' : ''),
        td(rep ? rep.outbox_unpublished + ' / ' + rep.outbox_unconfirmed : null, rep && rep.outbox_unpublished > 0 ? 'num warn' : 'num'),
        backlogCell(r.backlog, state),
        refusedCell(rep),
        td(rep ? rep.dead_letters : null, rep && rep.dead_letters > 0 ? 'num bad' : 'num'),
        td(rep ? rep.waiting_requests : null, 'num'),
        td(meta ? meta.failing : null, meta && meta.failing > 0 ? 'num bad' : 'num'),
        td(r.problems.join('; ') || ''),
      ]);
      body.appendChild(row);
    });
  }

  function renderLag(d) {
    var ids = d.regions.map(function (r) { return r.id; });
    var table = byId('lag');
    var head = table.tHead;
    var body = table.tBodies[0];
    head.replaceChildren(el('tr', {}, [el('th', { text: 'origin \u2193 / region \u2192', scope: 'col' })].concat(ids.map(function (id) { return el('th', { text: id, scope: 'col' }); }))));
    body.replaceChildren();
    ids.forEach(function (origin) {
      var cells = ids.map(function (region) {
        if (region === origin) return td('', 'none');
        var c = d.lag.find(function (x) { return x.origin === origin && x.region === region; });
        // A member without figures (not in the serving region's config) has no cells.
        if (!c) return td('unknown', 'none');
        var text = c.state === 'caught-up' ? 'caught up' : c.state === 'behind' ? (c.behind_ms === null ? 'behind' : 'behind ' + ms(c.behind_ms)) : c.state;
        var cell = td(text, { 'caught-up': 'ok', behind: 'warn', down: 'bad', unknown: 'none' }[c.state]);
        cell.setAttribute('data-origin', origin);
        cell.setAttribute('data-region', region);
        cell.setAttribute('data-state', c.state);
        cell.title = 'last event applied ' + (c.last_applied_at || 'never') + ', ' + ms(c.last_lag_ms) + ' after its commit';
        return cell;
      });
      body.appendChild(el('tr', {}, [el('th', { text: origin, scope: 'row' })].concat(cells)));
    });
  }

  function renderRefreshFailures(d) {
    var list = byId('refresh-failures');
    list.replaceChildren();
    var unread = [];
    d.regions.forEach(function (r) {
      var m = r.metadata_refresh;
      // A configured region whose refreshes could not be read (down, or its route failed): not shown as failing none.
      if (!m) { if (r.url) unread.push(r.id); return; }
      m.failures.forEach(function (f) {
        var item = { text: r.id + ': ' + f.idp_metadata_url + ' — ' + f.consecutive_failures + ' failures, last: ' + (f.last_error || '?') };
        // Its refreshes failed until the stored document's validUntil passed: the credential signs no one in.
        if (f.expired_since) {
          item.text += '; its metadata expired at ' + f.expired_since + ' (sign-ins refused)';
          item['data-expired-since'] = f.expired_since;
          item.class = 'bad';
        }
        list.appendChild(el('li', item));
      });
      // Only the first few are sent: say how many more there are (how many of them expired), and where they are
      // listed. Each credential is counted once: a failing one here, expired or not; below, those that expired
      // while not failing (the region counts both apart: failing_expired).
      var more = m.failing - m.failures.length;
      var shownFailingExpired = m.failures.filter(function (f) { return f.expired_since; }).length;
      var moreFailingExpired = Math.min(Math.max(m.failing_expired - shownFailingExpired, 0), Math.max(more, 0));
      if (more > 0) {
        var ofThem = '';
        if (m.failing_expired_is_bound) {
          // A region of a version that does not count them: those among the failing ones it lists.
          ofThem = moreFailingExpired > 0 ? 'at least ' + moreFailingExpired + ' of them expired, its version counting them only among those it lists; ' : 'its version does not say how many of them expired; ';
        } else if (moreFailingExpired > 0) {
          ofThem = moreFailingExpired + ' of them expired: sign-ins refused; ';
        }
        var moreItem = { text: r.id + ': ' + more + ' more failing (' + ofThem + 'GET /admin/metadata-refresh on ' + r.id + ' lists them)', 'data-more': String(more), 'data-more-failing-expired': String(moreFailingExpired), class: 'bad' };
        if (m.failing_expired_is_bound) moreItem['data-failing-expired-bound'] = 'true';
        list.appendChild(el('li', moreItem));
      }
      // Expired while its refreshes do not fail (a newer document held, or no refresh due): signs no one in all
      // the same, and was listed nowhere, the list holding failing refreshes only.
      m.expired_credentials.forEach(function (c) {
        var why = c.held_since
          ? 'a newer document is held since ' + c.held_since + ' (an operator accepts it: POST /admin/metadata-refresh/' + c.credential_id + '/accept)'
          : 'its refreshes do not fail; the next is due at ' + (c.next_at || '?');
        list.appendChild(el('li', { text: r.id + ': ' + c.idp_metadata_url + ' — its metadata expired at ' + c.expired_since + ' (sign-ins refused); ' + why, 'data-expired-since': c.expired_since, class: 'bad' }));
      });
      // The expired ones not failing, less those listed above (the failing ones are counted on their own line).
      var moreExpired = Math.max(m.expired - m.failing_expired, 0) - m.expired_credentials.length;
      var notFailing = ' more whose metadata expired while their refreshes do not fail';
      if (m.expired_is_bound) {
        // A region of a version that does not count them all: counted among the 500 it lists, maybe more.
        var bound = (moreExpired > 0 ? 'at least ' + moreExpired : 'maybe') + notFailing;
        list.appendChild(el('li', { text: r.id + ': ' + bound + ' (its version counts them only among the 500 credentials its GET /admin/metadata-refresh lists)', 'data-more-expired': String(Math.max(moreExpired, 0)), 'data-expired-bound': 'true', class: 'bad' }));
      } else if (moreExpired > 0 && m.failing_expired_is_bound) {
        // Its expired ones counted, but not which of them fail: the failing ones it does not list may be among them.
        list.appendChild(el('li', { text: r.id + ': up to ' + moreExpired + notFailing + ' (its version does not say how many of its failing ones expired; GET /admin/metadata-refresh on ' + r.id + ' lists the first 500 credentials, with expired_since)', 'data-more-expired': String(moreExpired), 'data-expired-bound': 'upper', class: 'bad' }));
      } else if (moreExpired > 0) {
        list.appendChild(el('li', { text: r.id + ': ' + moreExpired + notFailing + ' (GET /admin/metadata-refresh on ' + r.id + ' lists the first 500 credentials, with expired_since)', 'data-more-expired': String(moreExpired), class: 'bad' }));
      }
    });
    unread.forEach(function (id) {
      list.appendChild(el('li', { text: id + ': not read (its problems say why)', 'data-unread': id, class: 'warn' }));
    });
    if (!list.children.length) list.appendChild(el('li', { text: 'none', class: 'ok' }));
  }

  function renderChange(status, message) {
    var box = byId('change');
    box.replaceChildren();
    if (!status) { box.appendChild(el('p', { text: message, class: 'bad' })); return; }
    box.appendChild(el('p', { text: 'Change ' + status.change_id + ': ' + status.state, 'data-change-state': status.state, class: status.complete ? 'ok' : 'warn' }));
    if (status.idempotency_key) box.appendChild(el('p', { text: status.idempotency_key.message, id: 'change-idempotency-key', class: 'warn' }));
    var superseded = {};
    status.superseded.forEach(function (s) { superseded[s.region] = s; });
    var rows = Object.keys(status.applied_at).map(function (region) {
      var at = status.applied_at[region];
      var state = at ? 'applied' : superseded[region] ? 'superseded' : status.discarded_regions.indexOf(region) >= 0 ? 'discarded' : 'pending';
      var row = el('tr', { 'data-region': region, 'data-state': state }, [
        el('th', { text: region, scope: 'row' }),
        td(state, { applied: 'ok', superseded: 'warn', discarded: 'warn', pending: 'bad' }[state]),
        td(at || (superseded[region] ? superseded[region].at : null)),
      ]);
      return row;
    });
    var head = el('thead', {}, [el('tr', {}, [el('th', { text: 'Region', scope: 'col' }), el('th', { text: 'State', scope: 'col' }), el('th', { text: 'At', scope: 'col' })])]);
    box.appendChild(el('table', { id: 'change-regions' }, [head, el('tbody', {}, rows)]));
  }

  function refreshChange() {
    if (!followed) return Promise.resolve();
    var id = followed;
    var mine = session;
    // The browser resolves a path segment . or .. (however escaped): /changes/.. would ask /admin/replication.
    if (id === '.' || id === '..') return Promise.resolve(renderChange(null, 'Change ' + id + ' not found: a change id is the X-Change-Id of a write.'));
    return api('/admin/replication/changes/' + encodeURIComponent(id)).then(function (res) {
      if (id !== followed || mine !== session) return;
      if (res.status === 401) return showLogin('The admin token was refused.');
      return res.json().then(function (body) {
        if (res.ok) renderChange(body);
        else renderChange(null, (body.errors && body.errors[0] && body.errors[0].message) || 'HTTP ' + res.status);
      });
    });
  }

  function poll() {
    clearTimeout(timer);
    var mine = session;
    var current = function () { return mine === session; };
    api('/admin/deployment').then(function (res) {
      if (!current()) return;
      if (res.status === 401) return showLogin('The admin token was refused.');
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json().then(function (d) {
        if (!current()) return;
        byId('meta').textContent = 'served by ' + d.region + ' · updated ' + new Date(d.generated_at).toLocaleTimeString();
        byId('meta').className = '';
        byId('console').classList.remove('stale');
        renderRegions(d);
        renderLag(d);
        renderRefreshFailures(d);
        return refreshChange();
      });
    }).catch(function (err) {
      if (!current()) return;
      byId('meta').textContent = 'this region did not answer (' + err.message + '); retrying; the figures below are from its last answer';
      byId('meta').className = 'bad';
      byId('console').classList.add('stale');
    }).then(function () {
      if (current() && token()) timer = setTimeout(poll, REFRESH_MS);
    });
  }

  function start() {
    session++;
    byId('login').hidden = true;
    byId('console').hidden = false;
    byId('forget').hidden = false;
    poll();
  }

  document.addEventListener('DOMContentLoaded', function () {
    byId('login').addEventListener('submit', function (e) {
      e.preventDefault();
      var value = byId('token').value.trim();
      byId('token').value = '';
      if (!value) return;
      var bad = unsendable(value);
      if (bad) return showLogin('This token holds ' + bad + ', which no HTTP header can carry (pasted with it?): it is not an admin token.');
      sessionStorage.setItem(KEY, value);
      start();
    });
    byId('forget').addEventListener('click', function () { showLogin(''); });
    byId('follow').addEventListener('submit', function (e) {
      e.preventDefault();
      var id = followed = byId('change-id').value.trim() || null;
      byId('change').replaceChildren();
      // The next refresh asks again; until then, say why nothing shows.
      refreshChange().catch(function (err) {
        if (id === followed) renderChange(null, 'this region did not answer (' + err.message + ')');
      });
    });
    if (token()) start(); else showLogin('');
  });
})();
`;
