"use strict";
(function () {
  var csrf = document.querySelector("meta[name=csrf]").content;
  var live = document.getElementById("live");
  var log = document.getElementById("log");
  var buttons = document.querySelectorAll("nav button");
  function busy(on) { buttons.forEach(function (b) { b.disabled = on; }); }
  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      busy(true);
      fetch("/api/" + b.dataset.op, { method: "POST", headers: { "X-Devcluster-CSRF": csrf } })
        .then(function (r) { return r.json(); })
        .catch(function (e) { return { ok: false, message: String(e) }; })
        .then(function () { busy(false); });
    });
  });
  var es = new EventSource("/events");
  es.addEventListener("live", function (e) { live.innerHTML = e.data; });
  es.addEventListener("log", function (e) {
    var m = JSON.parse(e.data);
    var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    var lines = m.text.split("\n").filter(function (l) { return l.length; });
    log.appendChild(document.createTextNode(lines.map(function (l) { return m.node + " | " + l + "\n"; }).join("")));
    if (atEnd) log.scrollTop = log.scrollHeight;
  });
})();
