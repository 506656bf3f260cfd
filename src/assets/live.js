// livesession's live client: join the page's live view over /live, send form changes (debounced,
// full state, numbered) and chat messages, morph the page with the HTML the server renders, show
// the connection state, reconnect with backoff and re-send whatever was not acknowledged. No
// dependencies, no inline script: the page passes what it needs in data attributes on <body>.
(function () {
  "use strict";

  var body = document.body;
  var root = document.documentElement;
  var view = body && body.getAttribute("data-live-view");
  if (!view || !("WebSocket" in window)) return;

  var csrf = body.getAttribute("data-live-csrf") || "";
  var version = Number(body.getAttribute("data-live-version") || 0);
  var build = (/\/live\.([0-9a-f]+)\.js/.exec((document.currentScript || {}).src || "") || [])[1] || "";
  var page = randomId();
  var DEFAULT_DEBOUNCE = 100;
  var MAX_BACKOFF = 10000;
  var MAX_MESSAGES = 200;

  var ws = null;
  var attempt = 0;
  var refusals = 0; // policy closes in a row
  var serverSaid = ""; // the server's last error message, until the next join
  var reconnectTimer = null;
  var restartSpread = 5000; // ms, as the server's joined message says
  var seq = 0;
  var pending = {}; // form id -> the newest change of that form not yet acknowledged
  var typing = {}; // form id -> what the page knew when that change was typed, and when
  var posts = []; // chat messages sent and not yet acknowledged, oldest first
  var timers = {}; // form id -> debounce timer
  var known = {}; // field name -> the value the server last confirmed for it
  var sent = {}; // field name -> values this page sent that the server may still echo

  function randomId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function byId(id) { return document.getElementById(id); }

  // ---- edits not yet acknowledged, kept in the browser ---------------------------------------
  // Every change and chat message the server has not acknowledged is kept in localStorage (per
  // session: the key is made from the page's CSRF token), so a tab closed or reloaded while the
  // server is unreachable loses nothing: the next page of this browser sends them first. A change
  // sent twice saves the same values again; a message keeps its nonce, so it is stored once.
  var STORE_KEY = "livesession-unsaved-" + csrf.slice(0, 16);
  var DRAFT_KEY = "livesession-draft-" + csrf.slice(0, 16);
  var MAX_STORED = 64 * 1024;

  function keepUnsaved() {
    var edits = { forms: {}, posts: posts.map(function (p) { return { form: p.form, nonce: p.nonce, body: p.body }; }) };
    Object.keys(pending).forEach(function (id) {
      var t = typing[id] || {};
      edits.forms[id] = { fields: pending[id].fields, base: t.base, typed_at: t.typed_at };
    });
    var count = Object.keys(edits.forms).length + edits.posts.length;
    try {
      var text = JSON.stringify(edits);
      if (count === 0) localStorage.removeItem(STORE_KEY);
      else if (text.length <= MAX_STORED) localStorage.setItem(STORE_KEY, text);
    } catch (e) { /* storage full or blocked: the edits stay in this page's memory */ }
    var line = byId("unsaved");
    if (line) line.textContent = count === 0 ? "" : count === 1 ? "1 change not yet saved" : count + " changes not yet saved";
  }

  // Edits an earlier page of this browser left unsaved: queued now, so they are sent first, in
  // order, as soon as the socket is open.
  function restoreUnsaved() {
    var edits = null;
    try { edits = JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch (e) { edits = null; }
    if (!edits || typeof edits !== "object") return;
    var forms = edits.forms || {};
    Object.keys(forms).forEach(function (id) {
      var form = byId(id), entry = forms[id];
      if (!form || !entry || typeof entry !== "object") return;
      // { fields, base, typed_at }, or the fields alone (kept by an older page).
      var values = entry.fields && typeof entry.fields === "object" ? entry.fields : entry;
      Object.keys(values).forEach(function (name) {
        if (form.elements[name]) form.elements[name].value = values[name];
      });
      var base = entry.base && typeof entry.base === "object" ? entry.base : null;
      queueChange(id, values, base, typeof entry.typed_at === "number" ? entry.typed_at : null);
    });
    (Array.isArray(edits.posts) ? edits.posts : []).forEach(function (p) {
      if (!p || typeof p.body !== "string" || typeof p.nonce !== "string") return;
      seq += 1;
      posts.push({ t: "post", form: p.form || "composer", seq: seq, nonce: p.nonce, body: p.body });
    });
    keepUnsaved();
  }

  function unsavedCount() { return Object.keys(pending).length + posts.length + Object.keys(timers).length; }

  // ---- connection -------------------------------------------------------------------------

  function setState(state, text) {
    root.classList.remove("live-static", "live-connecting", "live-connected", "live-disconnected");
    root.classList.add("live-" + state);
    var indicator = byId("live-status");
    if (!indicator) return;
    indicator.textContent = text || {
      connecting: "Connecting…",
      connected: "Live",
      disconnected: "Offline: your changes are kept and saved when the connection is back"
    }[state];
  }

  function lastMessageId() {
    var list = byId("messages");
    var last = list && list.lastElementChild;
    return last ? Number(last.getAttribute("data-id") || 0) : 0;
  }

  // Set once the page starts navigating away.
  var leaving = false;
  window.addEventListener("beforeunload", function (event) {
    // Edits not saved yet are kept for the next page, but the browser asks before the page goes.
    if (unsavedCount() > 0) {
      event.preventDefault();
      event.returnValue = "";
      return;
    }
    leaving = true;
  });
  window.addEventListener("pageshow", function () { leaving = false; }); // back from the cache

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    setState("connecting");
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/live");
    ws = socket;
    socket.onopen = function () {
      send({ t: "join", view: view, csrf: csrf, build: build, page: page, version: version, last_message: lastMessageId(), presence: presenceVersion() });
      // Everything not acknowledged, in the order it was first sent.
      var unacked = posts.slice();
      Object.keys(pending).forEach(function (form) { unacked.push(pending[form]); });
      unacked.sort(function (a, b) { return a.seq - b.seq; }).forEach(function (m) {
        send(m.t === "change" ? late(m) : m);
      });
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      receive(message);
    };
    socket.onclose = function (event) {
      if (ws !== socket) return;
      ws = null;
      // Keep what the server said last (a full disk, say) in view while retrying.
      setState("disconnected", serverSaid && serverSaid + " Retrying…");
      if (event.code === 1008 && refused()) return;
      if (event.code === 1012) {
        // The server restarts: come back at a random moment of its spread, not all at once.
        clearTimeout(reconnectTimer);
        reconnectTimer = setTimeout(connect, Math.random() * restartSpread);
        return;
      }
      scheduleReconnect();
    };
  }

  // The session or token is no longer valid (for example the browser was forgotten in another
  // tab): a reload gets fresh ones. Once, not in a loop: a second refusal soon after stops here.
  function refused() {
    refusals += 1;
    var last = 0;
    try { last = Number(sessionStorage.getItem("livesession-reloaded") || 0); } catch (e) { /* storage blocked */ }
    if (refusals === 1 && Date.now() - last > 30000) {
      try { sessionStorage.setItem("livesession-reloaded", String(Date.now())); } catch (e) { /* storage blocked */ }
      location.reload();
      return true;
    }
    if (refusals >= 3) {
      setState("disconnected", "This page has expired: reload it to continue");
      return true;
    }
    return false;
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    // Exponential backoff with full jitter, capped.
    var delay = Math.random() * Math.min(MAX_BACKOFF, 250 * Math.pow(2, attempt));
    attempt = Math.min(attempt + 1, 16);
    reconnectTimer = setTimeout(connect, delay);
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function receive(message) {
    switch (message.t) {
      case "joined":
        if (typeof message.restart_spread_ms === "number") restartSpread = message.restart_spread_ms;
        attempt = 0;
        refusals = 0;
        serverSaid = "";
        setState("connected");
        break;
      case "ack":
        acknowledged(message);
        break;
      case "render":
        version = message.version;
        root.setAttribute("data-theme", message.theme);
        var scheme = document.querySelector('meta[name="color-scheme"]');
        if (scheme) scheme.setAttribute("content", message.color_scheme);
        morphBody(message.html);
        break;
      case "messages":
        appendMessages(message.html);
        break;
      case "presence":
        showPresence(message);
        break;
      case "reload":
        // A page already on its way elsewhere (a form it posted, such as "sign out everywhere
        // else") must not reload: that would cancel the answer that carries its new cookie.
        if (!leaving) location.reload();
        break;
      case "error":
        serverSaid = message.message;
        setState("connected", message.message);
        break;
    }
  }

  // ---- forms ------------------------------------------------------------------------------

  function fields(form) {
    var values = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "_csrf" || el.disabled) return;
      values[el.name] = el.value;
    });
    return values;
  }

  function schedule(form, input) {
    var delay = Number(input.getAttribute("data-debounce") || form.getAttribute("data-debounce") || DEFAULT_DEBOUNCE);
    clearTimeout(timers[form.id]);
    timers[form.id] = setTimeout(function () { flush(form); }, delay);
    showStatus(form, "", false); // an earlier "Saved" no longer describes the form
    var note = input.name && byId(input.name + "-overtaken");
    if (note) note.textContent = ""; // typed over: the newest value is this one
  }

  function flush(form) {
    clearTimeout(timers[form.id]);
    delete timers[form.id];
    var values = fields(form);
    queueChange(form.id, values);
    showStatus(form, "Saving…", false);
    send(pending[form.id]);
  }

  // Numbers a change of `formId` to `values`, remembers what it sent, and keeps it until acked,
  // with what the page knew of those fields when it was typed (`base`: the values last saved,
  // as far as the page knows) and when (`typedAt`): both for the server's rule on late edits.
  function queueChange(formId, values, base, typedAt) {
    seq += 1;
    var knew = {};
    Object.keys(values).forEach(function (name) {
      (sent[name] = sent[name] || []).push({ seq: seq, value: values[name] });
      if (Object.prototype.hasOwnProperty.call(known, name)) knew[name] = known[name];
    });
    pending[formId] = { t: "change", form: formId, seq: seq, fields: values };
    typing[formId] = { base: base || knew, typed_at: typedAt || Date.now() };
    keepUnsaved();
  }

  // A change sent after a reconnect or by a later page: it says what the page knew when it was
  // typed, and how long ago that was, so a field saved from elsewhere since keeps that value.
  function late(change) {
    var t = typing[change.form];
    if (!t) return change;
    return {
      t: "change", form: change.form, seq: change.seq, fields: change.fields,
      late: { base: t.base, typed_ago_ms: Math.max(0, Date.now() - t.typed_at) }
    };
  }

  // A field of a late change that was saved from elsewhere after it was typed: the field shows
  // the newer value, and a sentence next to it offers to apply this page's value anyway.
  function showOvertaken(form, name, info, mine) {
    var line = byId(name + "-overtaken");
    var field = form && form.elements[name];
    if (!line || !field || typeof mine !== "string" || !info) return;
    field.value = info.value;
    known[name] = info.value;
    var when = new Date(info.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    line.textContent = "Not applied: changed on another device or tab at " + when + ". ";
    var option = field.tagName === "SELECT" && field.querySelector('option[value="' + CSS.escape(mine) + '"]');
    var shown = document.createElement("bdi");
    shown.textContent = option ? option.textContent : mine;
    var button = document.createElement("button");
    button.type = "button";
    button.setAttribute("data-live-apply", name);
    button.appendChild(document.createTextNode("Apply “"));
    button.appendChild(shown);
    button.appendChild(document.createTextNode("” anyway"));
    button.addEventListener("click", function () {
      line.textContent = "";
      field.value = mine;
      flush(form);
    });
    line.appendChild(button);
  }

  function post(form) {
    var field = form.elements.body;
    seq += 1;
    var message = { t: "post", form: form.id, seq: seq, nonce: randomId(), body: field.value };
    posts.push(message);
    keepUnsaved();
    showStatus(form, "Sending…", false);
    send(message);
  }

  function acknowledged(message) {
    var form = byId(message.form);
    var errors = message.errors || {};
    var refused = Object.keys(errors).length > 0;
    if (message.form === "composer") {
      var index = posts.findIndex(function (p) { return p.seq === message.seq; });
      var sentPost = index >= 0 ? posts.splice(index, 1)[0] : null;
      var field = byId("body");
      var error = byId("body-error");
      if (error) error.textContent = errors.body || "";
      if (field) field.setAttribute("aria-invalid", refused ? "true" : "false");
      if (!refused && sentPost && field && field.value === sentPost.body) {
        field.value = "";
        keepDraft(field);
      }
      keepUnsaved();
      showStatus(form, refused ? "Not sent" : "", false);
      return;
    }
    var change = pending[message.form];
    var overtaken = message.overtaken || {};
    Object.keys(overtaken).forEach(function (name) {
      var mine = (sent[name] || []).filter(function (s) { return s.seq === message.seq; })[0];
      showOvertaken(form, name, overtaken[name], mine && mine.value);
    });
    if (change && change.seq <= message.seq) {
      delete pending[message.form];
      delete typing[message.form];
    }
    keepUnsaved();
    Object.keys(sent).forEach(function (name) {
      // Keep the acknowledged value itself: its render may still be on its way.
      sent[name] = sent[name].filter(function (s) { return s.seq >= message.seq; });
    });
    if (refused) {
      showStatus(form, "Not saved: see the message above.", false);
    } else if (Object.keys(overtaken).length > 0) {
      showStatus(form, "Not all applied: see the note next to the field.", false);
    } else if (!pending[message.form] && !timers[message.form]) {
      showStatus(form, "Saved", true);
    }
  }

  function showStatus(form, text, saved) {
    var status = form && form.querySelector(".status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("saved", saved);
  }

  function bind(form) {
    if (form.__live) return;
    form.__live = true;
    if (form.hasAttribute("data-live-submit")) return bindComposer(form);
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name) known[el.name] = el.value;
    });
    form.addEventListener("input", function (event) { schedule(form, event.target); });
    // A text field also fires `change` on blur, which would re-send a value another tab has
    // replaced since; only choices (selects, boxes) are taken from it.
    form.addEventListener("change", function (event) {
      var el = event.target;
      if (el.tagName === "SELECT" || el.type === "checkbox" || el.type === "radio") schedule(form, el);
    });
    form.addEventListener("focusout", function (event) {
      var field = event.target;
      if (timers[form.id]) flush(form);
      // Leaving a field that another tab changed: it now shows what is saved (which is this
      // tab's own text, if it was still unsent above).
      var hint = byId(field.name + "-remote");
      if (hint && hint.textContent) {
        hint.textContent = "";
        var mine = sent[field.name] && sent[field.name][sent[field.name].length - 1];
        field.value = mine && pending[form.id] ? mine.value : known[field.name];
      }
    });
    form.addEventListener("submit", function (event) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return; // no connection: a plain form post
      event.preventDefault();
      flush(form);
    });
  }

  // The composer's text survives a reload: kept as it is typed, dropped once it is sent.
  function keepDraft(field) {
    try {
      if (field.value) localStorage.setItem(DRAFT_KEY, field.value.slice(0, 4096));
      else localStorage.removeItem(DRAFT_KEY);
    } catch (e) { /* storage blocked */ }
  }

  function bindComposer(form) {
    var body = form.elements.body;
    if (!body.value) {
      try { body.value = localStorage.getItem(DRAFT_KEY) || ""; } catch (e) { /* storage blocked */ }
    }
    body.addEventListener("input", function () { keepDraft(body); });
    form.addEventListener("submit", function (event) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return; // no connection: a plain form post
      event.preventDefault();
      if (form.elements.body.value.trim() === "") return;
      post(form);
    });
    form.elements.body.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
      }
    });
  }

  function bindAll() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-live-change], form[data-live-submit]"), bind);
    localizeTimes(body);
  }

  // Times are rendered in UTC; show them in the reader's own time zone.
  function localizeTimes(scope) {
    Array.prototype.forEach.call(scope.querySelectorAll("time[datetime]"), function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    });
  }

  // Leaving the page: send what is pending now; if the socket cannot take it, a beacon posts the
  // form the way a browser without JavaScript would (the server treats both the same).
  window.addEventListener("pagehide", function () {
    Object.keys(timers).forEach(function (id) {
      var form = byId(id);
      if (form) flush(form);
    });
    Object.keys(pending).forEach(function (id) {
      var form = byId(id);
      if (form && navigator.sendBeacon) {
        navigator.sendBeacon(form.getAttribute("action"), new URLSearchParams(new FormData(form)));
      }
    });
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !ws && !reconnectTimer) connect();
  });

  // ---- chat ---------------------------------------------------------------------------------

  // Who has the chat open: replaced as a whole (a polite live region announces it).
  function showPresence(message) {
    var list = byId("presence");
    if (!list) return;
    list.innerHTML = message.html;
    list.setAttribute("data-version", String(message.version));
  }

  function presenceVersion() {
    var list = byId("presence");
    return list ? Number(list.getAttribute("data-version")) || 0 : 0;
  }

  function appendMessages(html) {
    var list = byId("messages");
    if (!list) return;
    var template = document.createElement("template");
    template.innerHTML = html;
    Array.prototype.slice.call(template.content.children).forEach(function (item) {
      if (!item.id || byId(item.id)) return; // already shown
      localizeTimes(item);
      list.appendChild(item);
    });
    while (list.children.length > MAX_MESSAGES) list.removeChild(list.firstElementChild);
    var empty = byId("no-messages");
    if (empty && list.children.length) empty.remove();
  }

  // The notice of a new device: dismissed on this page (the server stops drawing it too).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-live-dismiss]");
    if (!button) return;
    var notice = byId(button.getAttribute("data-live-dismiss"));
    if (notice) notice.remove();
    send({ t: "dismiss" });
  });

  // Older messages, loaded into the list in place (the link works without JavaScript too): the
  // messages in view stay where they are.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-live-older]");
    if (!link || view !== "chat") return;
    event.preventDefault();
    if (link.getAttribute("aria-busy") === "true") return;
    link.setAttribute("aria-busy", "true");
    fetch(link.href, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var list = byId("messages");
        var older = page.getElementById("messages");
        if (!list || !older) return;
        var fromBottom = list.scrollHeight - list.scrollTop;
        var first = list.firstElementChild;
        Array.prototype.slice.call(older.children).forEach(function (item) {
          if (!item.id || byId(item.id)) return;
          var node = document.importNode(item, true);
          localizeTimes(node);
          list.insertBefore(node, first);
        });
        list.scrollTop = list.scrollHeight - fromBottom;
        var next = page.getElementById("older");
        if (next) {
          link.setAttribute("href", next.getAttribute("href"));
          link.removeAttribute("aria-busy");
        } else {
          // Said in its place, so nothing below it moves.
          var none = document.createElement("span");
          none.textContent = "No older messages";
          link.parentNode.replaceChild(none, link);
        }
      })
      .catch(function () { window.location.href = link.href; });
  });

  // ---- morphing ---------------------------------------------------------------------------

  function morphBody(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    morphChildren(body, template.content);
    bindAll();
  }

  function sameNode(a, b) {
    if (a.nodeType !== b.nodeType) return false;
    if (a.nodeType !== 1) return true;
    return a.tagName === b.tagName && (a.id || "") === (b.id || "");
  }

  function findKeyed(parent, id, from) {
    for (var i = from; i < parent.childNodes.length; i++) {
      if (parent.childNodes[i].id === id) return parent.childNodes[i];
    }
    return null;
  }

  function morphChildren(from, to) {
    var wantedIds = {};
    Array.prototype.forEach.call(to.childNodes, function (n) { if (n.id) wantedIds[n.id] = true; });
    var index = 0;
    var next = to.firstChild;
    while (next) {
      var wanted = next;
      var have = from.childNodes[index];
      if (have && !sameNode(have, wanted) && have.id && !wantedIds[have.id]) {
        // A keyed node that is gone: remove it rather than moving others around it, so the
        // nodes that stay (and the focus inside them) are never detached.
        from.removeChild(have);
        continue;
      }
      next = next.nextSibling;
      if (!have) {
        from.appendChild(wanted);
      } else if (sameNode(have, wanted)) {
        morphNode(have, wanted);
      } else {
        var keyed = wanted.id ? findKeyed(from, wanted.id, index + 1) : null;
        if (keyed) {
          from.insertBefore(keyed, have);
          morphNode(keyed, wanted);
        } else {
          from.insertBefore(wanted, have);
        }
      }
      index += 1;
    }
    while (from.childNodes.length > index) from.removeChild(from.lastChild);
  }

  function morphNode(have, wanted) {
    if (have.nodeType !== 1) {
      if (have.nodeValue !== wanted.nodeValue) have.nodeValue = wanted.nodeValue;
      return;
    }
    if (have.hasAttribute("data-live-client")) return;
    var focused = have === document.activeElement;
    var keep = have.hasAttribute("data-live-keep");
    morphAttributes(have, wanted, focused || keep);
    var tag = have.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA") {
      if (keep) return; // the value belongs to the person typing (the chat draft)
      var incoming = tag === "INPUT" ? wanted.getAttribute("value") || "" : wanted.textContent;
      syncValue(have, incoming, focused);
      return;
    }
    if (tag === "SELECT" && focused) return; // the person is choosing: leave it be
    morphChildren(have, wanted);
    if (tag === "SELECT") {
      var selected = wanted.querySelector("option[selected]");
      syncValue(have, selected ? selected.value : have.value, false);
    }
  }

  function morphAttributes(have, wanted, keepValue) {
    var i;
    for (i = have.attributes.length - 1; i >= 0; i--) {
      var name = have.attributes[i].name;
      if (!wanted.hasAttribute(name) && !(keepValue && name === "value")) have.removeAttribute(name);
    }
    for (i = 0; i < wanted.attributes.length; i++) {
      var attr = wanted.attributes[i];
      if (keepValue && attr.name === "value") continue;
      if (have.getAttribute(attr.name) !== attr.value) have.setAttribute(attr.name, attr.value);
    }
  }

  // The field the person is in keeps what they typed. If the server's value is none of what this
  // tab sent (or already knew), another tab changed it: say so quietly next to the field.
  function syncValue(el, incoming, focused) {
    var ours = (sent[el.name] || []).some(function (s) { return s.value === incoming; });
    if (!focused) {
      if (el.value !== incoming) el.value = incoming;
    } else if (incoming !== el.value && incoming !== known[el.name] && !ours) {
      var hint = byId(el.name + "-remote");
      if (hint) {
        // The value is isolated in a <bdi>, as the server isolates names: a right-to-left value
        // cannot reorder the sentence around it.
        var value = document.createElement("bdi");
        value.textContent = incoming;
        hint.textContent = "Changed in another tab to “";
        hint.appendChild(value);
        hint.appendChild(document.createTextNode("”. Keep typing to replace it."));
      }
    }
    known[el.name] = incoming;
  }

  bindAll();
  restoreUnsaved();
  connect();
})();
