// The live part of the conversation page: results of a conversation in progress arrive over a WebSocket
// (the same frames a Symbl subscribe client gets) and are added to the server-rendered page.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const transcript = document.getElementById("transcript");
  const status = document.getElementById("status");
  const seen = new Set(Array.from(transcript.querySelectorAll("[data-message-id]"), (li) => li.dataset.messageId));
  const seenInsights = new Set();
  let interim = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;  // textContent: speech is data, never markup
    return node;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  function line(speaker, offsetSeconds, text, className) {
    const li = el("li", className);
    li.append(el("time", "", clock(offsetSeconds)));
    const body = el("div");
    body.append(el("span", "who", speaker), el("br"), document.createTextNode(text));
    li.append(body);
    return li;
  }

  function addMessage(message) {
    if (seen.has(message.id)) return;
    seen.add(message.id);
    const offset = message.duration ? message.duration.timeOffset || 0 : 0;
    const li = line((message.from && message.from.name) || "Unknown speaker", offset, message.payload.content);
    li.dataset.messageId = message.id;
    li.id = "m-" + message.id;
    // Keep the transcript in time order: finals of several speakers can arrive out of order.
    li.dataset.offset = offset;
    let before = null;
    for (const other of transcript.querySelectorAll("li[data-offset]")) {
      if (Number(other.dataset.offset) > offset) { before = other; break; }
    }
    transcript.insertBefore(li, before || (interim && interim.parentNode === transcript ? interim : null));
    const empty = document.getElementById("transcript-empty");
    if (empty) empty.remove();
  }

  function showInterim(message) {
    const text = message.punctuated ? message.punctuated.transcript : "";
    if (!text) return;
    const speaker = (message.user && message.user.name) || "Unknown speaker";
    const next = line(speaker, 0, text + " …", "interim");
    next.querySelector("time").textContent = "";
    if (interim) interim.replaceWith(next); else transcript.append(next);
    interim = next;
  }

  function addInsight(insight) {
    const list = document.getElementById(insight.type + "s");
    if (!list || seenInsights.has(insight.id)) return;
    seenInsights.add(insight.id);
    const li = el("li");
    li.append(el("span", "", insight.payload.content));
    const owner = insight.assignee && insight.assignee.name;
    const meta = owner ? "Owner: " + owner : "From " + ((insight.from && insight.from.name) || "unknown");
    li.append(el("div", "meta", meta + (insight.dueBy ? " · due " + insight.dueBy.value.slice(0, 10) : "")));
    list.append(li);
  }

  function setTopics(topics) {
    const list = document.getElementById("topics");
    list.replaceChildren(...topics.map((topic) => el("li", "", topic.phrases)));
  }

  function addTrackers(trackers) {
    const list = document.getElementById("trackers");
    for (const tracker of trackers) {
      let li = Array.from(list.children).find((node) => node.dataset.tracker === tracker.name);
      if (!li) { li = el("li"); li.dataset.tracker = tracker.name; li.dataset.values = "[]"; list.append(li); }
      const values = JSON.parse(li.dataset.values || "[]");
      for (const match of tracker.matches) if (!values.includes(match.value)) values.push(match.value);
      li.dataset.values = JSON.stringify(values);
      li.replaceChildren(el("span", "who", tracker.name), document.createTextNode(": " + values.join(", ")));
    }
  }

  function ended() {
    status.textContent = "Ended";
    status.className = "badge ended";
    // The full page (summary, talk time) is rendered once the store has the last results.
    setTimeout(() => window.location.reload(), 6000);
  }

  const url = new URL(live.dataset.liveUrl, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "message_response") {
      frame.messages.forEach(addMessage);
      if (interim) { interim.remove(); interim = null; }
    } else if (frame.type === "insight_response") {
      frame.insights.forEach(addInsight);
    } else if (frame.type === "topic_response") {
      setTopics(frame.topics);
    } else if (frame.type === "tracker_response" && frame.isFinal !== false) {
      addTrackers(frame.trackers);
    } else if (frame.type === "message" && frame.message) {
      if (frame.message.type === "recognition_result" && !frame.message.isFinal) showInterim(frame.message);
      if (frame.message.type === "conversation_completed") ended();
    }
  });
  socket.addEventListener("close", () => { if (status.textContent === "Live") status.textContent = "Live (disconnected)"; });
  socket.addEventListener("open", () => { document.body.dataset.liveSocket = "open"; });
})();
