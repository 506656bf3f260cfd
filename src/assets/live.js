// livesession's live client: join the page's live view over /live, send form changes (debounced,
// full state, numbered), morph the page with the HTML the server renders, show the connection
// state, reconnect with backoff and re-send whatever was not acknowledged. No dependencies, no
// inline script: the page passes what it needs in data attributes on <body>.
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

  var ws = null;
  var attempt = 0;
  var reconnectTimer = null;
  var seq = 0;
  var pending = {}; // form id -> the newest change of that form not yet acknowledged
  var timers = {}; // form id -> debounce timer
  var known = {}; // field name -> the last value confirmed by the server or sent by us

  function randomId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ---- connection -------------------------------------------------------------------------

  function setState(state) {
    root.classList.remove("live-static", "live-connecting", "live-connected", "live-disconnected");
    root.classList.add("live-" + state);
    var indicator = document.getElementById("live-status");
    if (!indicator) return;
    indicator.textContent = {
      connecting: "Connecting…",
      connected: "Live",
      disconnected: "Offline: your changes are kept and saved when the connection is back"
    }[state];
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    setState("connecting");
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/live");
    ws = socket;
    socket.onopen = function () {
      send({ t: "join", view: view, csrf: csrf, build: build, page: page, version: version });
      Object.keys(pending).forEach(function (form) { send(pending[form]); });
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      receive(message);
    };
    socket.onclose = function (event) {
      if (ws !== socket) return;
      ws = null;
      setState("disconnected");
      if (event.code === 1008) {
        // The session or token is no longer valid (for example the browser was forgotten in
        // another tab): a reload gets fresh ones. Guarded so a broken setup cannot loop.
        var last = Number(sessionStorage.getItem("livesession-reloaded") || 0);
        if (Date.now() - last > 30000) {
          sessionStorage.setItem("livesession-reloaded", String(Date.now()));
          location.reload();
          return;
        }
      }
      scheduleReconnect();
    };
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
        attempt = 0;
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
      case "reload":
        location.reload();
        break;
      case "error":
        showStatus(null, message.message, false);
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
  }

  function flush(form) {
    clearTimeout(timers[form.id]);
    delete timers[form.id];
    var values = fields(form);
    Object.keys(values).forEach(function (name) { known[name] = values[name]; });
    seq += 1;
    pending[form.id] = { t: "change", form: form.id, seq: seq, fields: values };
    showStatus(form, "Saving…", false);
    send(pending[form.id]);
  }

  function acknowledged(message) {
    var change = pending[message.form];
    if (change && change.seq <= message.seq) delete pending[message.form];
    var form = document.getElementById(message.form);
    if (message.errors && Object.keys(message.errors).length) {
      showStatus(form, "Not saved: see the message above.", false);
    } else if (!pending[message.form] && !timers[message.form]) {
      showStatus(form, "Saved", true);
    }
  }

  function showStatus(form, text, saved) {
    var status = form ? form.querySelector(".status") : document.getElementById("live-status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("saved", saved);
  }

  function bind(form) {
    if (form.__live) return;
    form.__live = true;
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
      var hint = document.getElementById(field.name + "-remote");
      if (hint && hint.textContent) {
        hint.textContent = "";
        if (field.name in known) field.value = known[field.name];
      }
    });
    form.addEventListener("submit", function (event) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return; // no connection: a plain form post
      event.preventDefault();
      flush(form);
    });
  }

  function bindAll() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-live-change]"), bind);
  }

  // Leaving the page: send what is pending now; if the socket cannot take it, a beacon posts the
  // form the way a browser without JavaScript would (the server treats both the same).
  window.addEventListener("pagehide", function () {
    Object.keys(timers).forEach(function (id) {
      var form = document.getElementById(id);
      if (form) flush(form);
    });
    Object.keys(pending).forEach(function (id) {
      var form = document.getElementById(id);
      if (form && navigator.sendBeacon) {
        navigator.sendBeacon(form.getAttribute("action"), new URLSearchParams(new FormData(form)));
      }
    });
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !ws) connect();
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
    var index = 0;
    var next = to.firstChild;
    while (next) {
      var wanted = next;
      next = next.nextSibling;
      var have = from.childNodes[index];
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
    morphAttributes(have, wanted, focused);
    var tag = have.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA") {
      var incoming = tag === "INPUT" ? wanted.getAttribute("value") || "" : wanted.textContent;
      syncValue(have, incoming, focused);
      return;
    }
    morphChildren(have, wanted);
    if (tag === "SELECT") {
      var selected = wanted.querySelector("option[selected]");
      syncValue(have, selected ? selected.value : have.value, focused);
    }
  }

  function morphAttributes(have, wanted, focused) {
    var i;
    for (i = have.attributes.length - 1; i >= 0; i--) {
      var name = have.attributes[i].name;
      if (!wanted.hasAttribute(name) && !(focused && name === "value")) have.removeAttribute(name);
    }
    for (i = 0; i < wanted.attributes.length; i++) {
      var attr = wanted.attributes[i];
      if (focused && attr.name === "value") continue;
      if (have.getAttribute(attr.name) !== attr.value) have.setAttribute(attr.name, attr.value);
    }
  }

  // The field the user is in keeps what they typed. If the server's value is neither that nor
  // what this tab last sent, another tab changed it: say so quietly next to the field.
  function syncValue(el, incoming, focused) {
    if (!focused) {
      if (el.value !== incoming) el.value = incoming;
      known[el.name] = incoming;
      return;
    }
    if (incoming !== el.value && incoming !== known[el.name]) {
      var hint = document.getElementById(el.name + "-remote");
      if (hint) hint.textContent = "Changed in another tab to “" + incoming + "”. Keep typing to replace it.";
    }
    known[el.name] = incoming;
  }

  bindAll();
  connect();
})();
