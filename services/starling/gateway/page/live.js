// Starling's live page: sign in at the identity service, read and write through the
// gateway, and keep the timeline, notifications and trends current over one SSE stream.
// No framework and nothing from a CDN: the page must work offline, served by the gateway.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { config: null, token: null, userId: null, stream: null, retryMs: 1000,
                  seenTweets: new Set(), seenNotes: new Set(), trends: new Map(),
                  trendWindow: null, replyTo: null, everOpened: false,
                  lastEventId: null };
  // What tests and the curious can read: per tweet id, when it was posted / shown (ms).
  window.starling = { posted: {}, shown: {} };

  // Ids are 64-bit; JavaScript numbers hold 53 bits exactly. Ids stay decimal strings
  // in the page and go over the wire as bare JSON numbers.
  const ID_FIELD = /"(\w*_id)":(\d+)/g;
  const parseIds = (text) => JSON.parse(text.replace(ID_FIELD, '"$1":"$2"'));
  const encodeIds = (value) => JSON.stringify(value).replace(/"(\w*_id)":"(\d+)"/g, '"$1":$2');

  function uuid4() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // Snowflake-ish: milliseconds since the epoch, then 10 random bits (fits 53 bits).
  const newTweetId = () =>
    String(Date.now() * 1024 + (crypto.getRandomValues(new Uint16Array(1))[0] & 1023));

  async function api(path, options = {}) {
    const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.token}` };
    if (options.body) headers["Content-Type"] = "application/json";
    const answer = await fetch(path, { ...options, headers });
    const text = await answer.text();
    const body = text ? parseIds(text) : null;
    if (!answer.ok) throw new Error((body && body.message) || `HTTP ${answer.status}`);
    return body;
  }

  function postEvent(event) {
    const full = { event_id: uuid4(), schema_version: 1,
                   event_time: new Date().toISOString(), ...event };
    return api("/v1/events", { method: "POST", body: encodeIds(full) });
  }

  // ---------------------------------------------------------------- rendering

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function button(label, name, onClick) {
    const node = el("button", { type: "button", "aria-label": name }, label);
    node.addEventListener("click", onClick);
    return node;
  }

  function tweetItem(entry, live) {
    const tweet = entry.tweet;
    const id = entry.tweet_id;
    const item = el("li", { "data-tweet-id": id, class: live ? "new" : "" });
    const article = el("article", { "aria-label": `tweet ${id}` });
    if (tweet) {
      const author = tweet.author_id;
      article.append(el("p", { class: "meta" }, `user ${author}`, tweet.reply_to_tweet_id
        ? ` · reply to user ${tweet.reply_to_user_id}` : ""));
      article.append(el("p", { class: "text" }, tweet.text));
      const actions = el("p", { class: "actions" });
      actions.append(
        button("Like", `like tweet ${id}`, (e) => like(id, author, e.target)),
        button("Reply", `reply to tweet ${id}`, () => startReply(id, author)),
      );
      if (author !== state.userId) {
        actions.append(button("Follow", `follow user ${author}`, (e) => follow(author, e.target)));
      }
      article.append(actions);
    } else {
      article.append(el("p", { class: "meta" }, `tweet ${id} (no longer stored)`));
    }
    item.append(article);
    return item;
  }

  function renderTimeline(page, live) {
    const list = $("timeline");
    const fresh = page.tweets.filter((entry) => !state.seenTweets.has(entry.tweet_id));
    // Newest first: insert the new ones, oldest of them first, each at the top.
    for (const entry of fresh.reverse()) {
      state.seenTweets.add(entry.tweet_id);
      const item = tweetItem(entry, live);
      const now = Date.now();
      window.starling.shown[entry.tweet_id] = now;
      item.dataset.shownMs = String(now);
      if (live) list.prepend(item);
      else list.append(item);
    }
  }

  function noteItem(note, live) {
    const text = note.message || `${note.kind}${note.actor_id ? ` from user ${note.actor_id}` : ""}`;
    return el("li", { "data-note-id": note.id, "data-kind": note.kind, class: live ? "new" : "" },
      el("p", {}, text),
      el("p", { class: "meta" }, new Date(note.time_ms).toLocaleTimeString()));
  }

  function addNotes(notes, live) {
    const list = $("notifications");
    const fresh = notes.filter((note) => !state.seenNotes.has(note.id));
    for (const note of live ? fresh.reverse() : fresh) {
      state.seenNotes.add(note.id);
      if (live) list.prepend(noteItem(note, true));
      else list.append(noteItem(note, false));
    }
  }

  function setTrends(trends) {
    for (const trend of trends) {
      // A newer window replaces the list: trends are per window.
      if (state.trendWindow !== trend.window_end) {
        if (state.trendWindow === null || trend.window_end > state.trendWindow) {
          state.trendWindow = trend.window_end;
          state.trends.clear();
        } else continue;
      }
      state.trends.set(trend.hashtag, trend);
    }
    const list = $("trends");
    list.replaceChildren(...[...state.trends.values()]
      .sort((a, b) => a.rank - b.rank)
      .map((t) => el("li", { "data-hashtag": t.hashtag },
        `#${t.hashtag} `, el("span", { class: "meta" }, `${t.count} tweets`))));
    list.dataset.updatedMs = String(Date.now());
  }

  // ---------------------------------------------------------------- reads

  async function refreshTimeline(live) {
    renderTimeline(await api(`/v1/users/${state.userId}/timeline?limit=50`), live);
  }

  async function refreshNotifications(live) {
    const body = await api(`/v1/users/${state.userId}/notifications?limit=50`);
    addNotes(body.notifications, live);
  }

  function setLeaders(current) {
    const leaders = (current && current.leaders) || [];
    $("leaders").replaceChildren(...leaders.map((leader) =>
      el("li", { "data-hashtag": leader.hashtag },
        `#${leader.hashtag} `, el("span", { class: "meta" }, `${leader.count} tweets`))));
  }

  // Detected trends arrive on the stream; the open window's leaders are read every few
  // seconds (they change with every tweet, too often to push).
  const LEADERS_EVERY_MS = 5000;

  async function refreshTrends() {
    const body = await api("/v1/trends");
    setTrends(body.trends);
    setLeaders(body.current);
  }

  async function refreshWhoToFollow() {
    const body = await api(`/v1/users/${state.userId}/who-to-follow`);
    $("who-to-follow").replaceChildren(...body.accounts.map((account) =>
      el("li", { "data-user-id": account.user_id },
        `user ${account.user_id} `,
        account.reason ? el("span", { class: "meta" }, `(${account.reason}) `) : "",
        button("Follow", `follow user ${account.user_id}`,
          (e) => follow(account.user_id, e.target)))));
    $("who-to-follow-empty").hidden = body.accounts.length > 0;
  }

  // ---------------------------------------------------------------- the stream

  function setStreamState(text, live) {
    $("stream-state").textContent = text;
    $("stream-state").classList.toggle("live", live);
  }

  function openStream() {
    // Same site as the identity service: the HttpOnly session cookie it set at sign-in
    // authenticates the stream (EventSource cannot send an Authorization header).
    // A new EventSource starts without an id: pass ours so the gateway replays what we
    // missed (the browser's own reconnects send it as Last-Event-ID).
    const resume = state.lastEventId
      ? `?last_event_id=${encodeURIComponent(state.lastEventId)}` : "";
    const stream = new EventSource(`/v1/users/${state.userId}/stream${resume}`,
      { withCredentials: true });
    state.stream = stream;
    stream.addEventListener("open", () => {
      setStreamState("live", true);
      state.retryMs = 1000;
      // After a reconnect without an id to resume from, catch up by re-reading; with one,
      // the gateway replays the missed updates, or sends `resync` when it cannot.
      if (state.everOpened && !state.lastEventId) catchUp();
      state.everOpened = true;
    });
    const seen = (e) => { if (e.lastEventId) state.lastEventId = e.lastEventId; };
    stream.addEventListener("timeline", (e) => {
      seen(e);
      refreshTimeline(true).catch(showError);
    });
    stream.addEventListener("notification", (e) => {
      seen(e);
      addNotes([parseIds(e.data).entry], true);
    });
    stream.addEventListener("trend", (e) => { seen(e); setTrends([parseIds(e.data)]); });
    // The gateway cannot replay from our id (another pod, restarted, or away too long).
    stream.addEventListener("resync", (e) => { seen(e); catchUp(); });
    stream.addEventListener("close", () => reconnect(stream));
    stream.addEventListener("error", () => {
      // The browser retries by itself unless the answer was an error status.
      if (stream.readyState === EventSource.CLOSED) reconnect(stream);
      else setStreamState("reconnecting…", false);
    });
  }

  function catchUp() {
    refreshTimeline(true).catch(() => {});
    refreshNotifications(true).catch(() => {});
    refreshTrends().catch(() => {});
    refreshWhoToFollow().catch(() => {});
  }

  function reconnect(stream) {
    stream.close();
    if (state.stream !== stream || state.token === null) return;
    setStreamState("reconnecting…", false);
    setTimeout(() => { if (state.stream === stream && state.token) openStream(); }, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 30000);
  }

  // ---------------------------------------------------------------- writes

  function showError(error) { $("compose-status").textContent = `Error: ${error.message}`; }

  async function like(tweetId, author, node) {
    try {
      await postEvent({ type: "user.interaction", actor_id: state.userId, action: "like",
                        target_user_id: author, tweet_id: tweetId, platform: "web" });
      node.textContent = "Liked";
      node.disabled = true;
    } catch (error) { showError(error); }
  }

  async function follow(userId, node) {
    try {
      await postEvent({ type: "user.interaction", actor_id: state.userId, action: "follow",
                        target_user_id: userId, platform: "web" });
      $("follow-status").textContent = `Following user ${userId}`;
      if (node) { node.textContent = "Following"; node.disabled = true; }
    } catch (error) { $("follow-status").textContent = `Error: ${error.message}`; }
  }

  function startReply(tweetId, author) {
    state.replyTo = { tweetId, author };
    $("replying-to").textContent = `user ${author}`;
    $("replying").hidden = false;
    $("tweet-text").focus();
  }

  function cancelReply() {
    state.replyTo = null;
    $("replying").hidden = true;
  }

  async function post(event) {
    event.preventDefault();
    const text = $("tweet-text").value.trim();
    if (!text) return;
    const tweetId = newTweetId();
    const tweet = { type: "tweet.created", tweet_id: tweetId, author_id: state.userId, text,
                    platform: "web" };
    if (state.replyTo) {
      tweet.reply_to_tweet_id = state.replyTo.tweetId;
      tweet.reply_to_user_id = state.replyTo.author;
    }
    const status = $("compose-status");
    window.starling.posted[tweetId] = Date.now();
    status.dataset.tweetId = tweetId;
    status.dataset.postedMs = String(window.starling.posted[tweetId]);
    try {
      await postEvent(tweet);
      status.textContent = "Posted";
      $("tweet-text").value = "";
      cancelReply();
    } catch (error) { showError(error); }
  }

  // ---------------------------------------------------------------- sign in / out

  async function signIn(event) {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      const answer = await fetch(`${state.config.identity_url}/v1/sessions`, {
        method: "POST",
        // Keep the session cookie the answer sets: it authenticates the stream.
        credentials: "include",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: $("username").value, password: $("password").value,
                               platform: "web" }),
      });
      const body = parseIds(await answer.text());
      if (!answer.ok) throw new Error(body.message || `HTTP ${answer.status}`);
      // In memory only: a reload signs out (the cookie is HttpOnly, unreadable here).
      state.token = body.access_token;
      state.userId = body.user_id;
    } catch (error) {
      $("sign-in-error").textContent = `Could not sign in: ${error.message}`;
      return;
    }
    $("password").value = "";
    $("sign-in-section").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $("who").textContent = `Signed in as ${$("username").value} (user ${state.userId})`;
    openStream();
    await Promise.all([refreshTimeline(false), refreshNotifications(false), refreshTrends(),
                       refreshWhoToFollow()]).catch(showError);
    setInterval(() => { if (state.token) refreshTrends().catch(() => {}); }, LEADERS_EVERY_MS);
    // The DAG runs hourly: a minute is fresh enough.
    setInterval(() => { if (state.token) refreshWhoToFollow().catch(() => {}); }, 60000);
    document.body.dataset.ready = "true";
  }

  async function signOut() {
    const token = state.token;
    state.token = null;
    if (state.stream) state.stream.close();
    state.stream = null;
    state.lastEventId = null;
    await fetch(`${state.config.identity_url}/v1/sessions/current`, {
      method: "DELETE", credentials: "include", headers: { Authorization: `Bearer ${token}` },
    }).catch(() => {});
    window.location.reload();
  }

  async function start() {
    state.config = await (await fetch("/config.json")).json();
    $("sign-in").addEventListener("submit", signIn);
    $("compose").addEventListener("submit", post);
    $("cancel-reply").addEventListener("click", cancelReply);
    $("sign-out").addEventListener("click", signOut);
    $("follow").addEventListener("submit", (event) => {
      event.preventDefault();
      follow($("follow-id").value.trim(), null);
    });
    document.body.dataset.loaded = "true";
  }

  start().catch((error) => { $("sign-in-error").textContent = `Page failed: ${error.message}`; });
})();
