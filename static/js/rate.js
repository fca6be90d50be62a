/* The rating page: shows the reader's next item, takes "Real" / "AI-generated" and a confidence,
   saves each answer the moment it is given, and moves on.

   Everything comes from the reader API (GET next, POST responses, the item's flag); each answer is
   posted with include_next, so the server answers with the next item as well: one request per
   answer (GET next only on load, and after a practice item's feedback). The page knows an item only
   by its unguessable token. Each answer gets a client_id (a UUID) once, and every retry resends the
   same body, so that a retry can never make a second answer.

   Answering is possible only in the "rating" mode, which starts when the item's image has decoded
   (never for an image that failed to load) and ends when the answer is sent: a key pressed while
   saving or loading is ignored with a visible cue, so it can never land on an image not yet seen.
   The reading clock runs only while the image is shown, the tab visible, the window focused and
   the reader active (IDLE_MS); it is sent as `active_seconds`. Built for hour-long sessions: one
   <img> and one preloading Image object are reused, listeners are attached once, nothing grows. */
(function () {
  "use strict";

  const cfg = JSON.parse(document.getElementById("rate-config").textContent);
  const csrfToken = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const img = $("patch");
  const viewport = $("viewport");
  const submitBtn = $("submit");
  const backBtn = $("back");
  const statusEl = $("status");
  const cueEl = $("key-cue");
  const feedbackEl = $("feedback");
  const breakEl = $("break-note");
  const flagBtn = $("flag");
  const flagDialog = $("flag-dialog");
  const flagComment = $("flag-comment");
  const answerBtns = Array.from(document.querySelectorAll("button.answer"));
  const levelBtns = Array.from(document.querySelectorAll("button.level"));
  const preloader = new Image(); // the next item's image, fetched ahead into the browser cache
  const viewer = window.HistoViewer.createViewer({
    viewport: viewport,
    img: img,
    zoomLabel: $("zoom-level"),
    scaleBar: $("scalebar"),
    micronsPerPixel: cfg.microns_per_pixel,
  });

  // The reader counts as gone after this long without a key, click, wheel or pointer move (the
  // clock then stops at the last activity plus this). Tests shorten it through window.HistoRateIdleMs.
  const IDLE_MS = window.HistoRateIdleMs || 3 * 60 * 1000;
  const ETA_MIN_SAMPLES = 3;

  // loading | decoding | broken (image failed) | rating | saving | feedback | stopped
  let mode = "loading";
  let current = null; // the item shown: {item, image_url, position, total, practice, answered, total_all, place}
  let choice = { answer: null, confidence: null };
  let pendingBody = null; // the answer being saved, with its client_id, kept across retries
  let previous = null; // the last answered item (for revision, where the study allows it)
  let revising = false;
  let shownSeq = 0; // which show() an image callback belongs to
  let carried = null; // {item, seconds}: the clock of the item left for a revision
  // The reader's latest reading times, newest first, for the time estimate: kept in this browser per
  // study and user (the page itself carries nothing that changes from one item to the next).
  const who = (document.querySelector(".topbar .who") || {}).textContent || "";
  const timesKey = `histosynth.times.${cfg.next_url}.${who.trim()}`;
  const times = loadTimes();

  function loadTimes() {
    try {
      const xs = JSON.parse(window.localStorage.getItem(timesKey) || "[]");
      return Array.isArray(xs) ? xs.filter((x) => typeof x === "number" && x >= 0).slice(0, 50) : [];
    } catch (err) {
      return [];
    }
  }

  function rememberTime(seconds) {
    times.unshift(seconds);
    times.length = Math.min(times.length, 50);
    try {
      window.localStorage.setItem(timesKey, JSON.stringify(times));
    } catch (err) {
      /* storage full or blocked: the estimate still uses this session's times */
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid4() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16)); // not a secure context: same format by hand
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /* ---- The reading clock: stopped while the tab is hidden, the window unfocused, or the reader idle. */
  const clock = {
    total: 0,
    since: null,
    on: false,
    idleTimer: null,
    lastActive: performance.now(),
    start(initialSeconds) {
      this.total = (initialSeconds || 0) * 1000;
      this.since = null;
      this.on = true;
      this.resume();
    },
    resume() {
      if (!this.on || this.since !== null || document.visibilityState === "hidden") return;
      this.since = performance.now();
      this.armIdle();
    },
    pause(at) {
      if (this.since === null) return;
      this.total += Math.max(0, (at === undefined ? performance.now() : at) - this.since);
      this.since = null;
    },
    stop() {
      this.pause();
      this.on = false;
      return this.seconds();
    },
    seconds() {
      const running = this.since === null ? 0 : performance.now() - this.since;
      return Math.round((this.total + running) / 10) / 100;
    },
    activity() {
      this.lastActive = performance.now();
      if (this.since === null) this.resume();
      else this.armIdle();
    },
    armIdle() {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => this.pause(this.lastActive + IDLE_MS), IDLE_MS);
    },
  };
  document.addEventListener("visibilitychange", () =>
    document.visibilityState === "hidden" ? clock.pause() : clock.resume(),
  );
  window.addEventListener("blur", () => clock.pause());
  window.addEventListener("focus", () => clock.resume());
  window.addEventListener("pagehide", () => clock.pause());
  for (const type of ["keydown", "pointerdown", "pointermove", "wheel"]) {
    document.addEventListener(type, () => clock.activity(), { passive: true, capture: true });
  }

  /* ---- Messages. */
  function setStatus(text, isError) {
    statusEl.textContent = text || "";
    statusEl.classList.toggle("error", !!isError);
  }

  let cueTimer = null;
  function cue(text) {
    cueEl.textContent = text;
    cueEl.hidden = false;
    cueEl.classList.remove("flash");
    void cueEl.offsetWidth; // restart the flash animation
    cueEl.classList.add("flash");
    clearTimeout(cueTimer);
    cueTimer = setTimeout(() => (cueEl.hidden = true), 2500);
  }

  function hint(text, group) {
    setStatus(text, true);
    for (const el of document.querySelectorAll(".needs")) el.classList.remove("needs");
    if (group) $(group).classList.add("needs");
  }

  /* fetch with retries for network failures and server errors (5xx); 4xx answers are returned. */
  async function api(url, options, retries) {
    const maxRetries = retries === undefined ? 6 : retries;
    for (let attempt = 0; ; attempt++) {
      let resp;
      try {
        resp = await fetch(url, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
      } catch (err) {
        if (attempt >= maxRetries) throw err;
        setStatus(`Connection problem, retrying (${attempt + 1}/${maxRetries})…`, true);
        await sleep(Math.min(500 * 2 ** attempt, 8000));
        continue;
      }
      if (resp.status >= 500 && attempt < maxRetries) {
        setStatus(`Server busy, retrying (${attempt + 1}/${maxRetries})…`, true);
        await sleep(Math.min(500 * 2 ** attempt, 8000));
        continue;
      }
      let body = null;
      try {
        body = await resp.json();
      } catch (err) {
        body = null;
      }
      return { status: resp.status, body: body };
    }
  }

  const jsonHeaders = () => ({ "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken });

  /* ---- Rendering. */
  function render() {
    const complete = choice.answer !== null && choice.confidence !== null;
    for (const b of answerBtns) b.setAttribute("aria-pressed", String(b.dataset.answer === choice.answer));
    for (const b of levelBtns) b.setAttribute("aria-pressed", String(Number(b.dataset.confidence) === choice.confidence));
    const inputs = mode === "rating";
    for (const b of answerBtns.concat(levelBtns)) b.disabled = !inputs;
    submitBtn.disabled = !inputs;
    submitBtn.classList.toggle("ready", inputs && complete);
    if (backBtn) backBtn.hidden = !(cfg.allow_revision && previous && !revising && (mode === "rating" || mode === "decoding"));
    flagBtn.disabled = !canFlag();
    flagBtn.setAttribute("aria-pressed", String(isFlagged()));
    flagBtn.querySelector(".flag-text").textContent = isFlagged() ? "Flagged (edit)" : "Flag this image";
    $("rate").dataset.mode = mode;
  }

  function showProgress(item) {
    $("phase").textContent = item.practice ? "Practice image" : revising ? "Changing previous answer" : "Image";
    // One count everywhere (home, intro, this page, finish): every item of the reader's order.
    $("progress-text").textContent = `${item.place} / ${item.total_all}`;
    const bar = $("progress-bar");
    bar.max = item.total_all;
    bar.value = item.answered;
    showEstimate(item);
  }

  function median(xs) {
    const s = xs.slice().sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function showEstimate(item) {
    const el = $("eta");
    const remaining = item.total_all - item.answered;
    if (times.length < ETA_MIN_SAMPLES || remaining <= 0) {
      el.textContent = "";
      return;
    }
    const minutes = (remaining * median(times)) / 60;
    let text;
    if (minutes < 1) text = "under a minute left";
    else if (minutes < 90) text = `about ${Math.round(minutes)} min left`;
    else text = `about ${Math.floor(minutes / 60)} h ${Math.round(minutes % 60)} min left`;
    el.textContent = text;
    el.title = `${remaining} image${remaining === 1 ? "" : "s"} at your median of ${Math.round(median(times))} s each`;
  }

  function maybeBreak(item) {
    const every = cfg.break_every || 0;
    if (every > 0 && item.answered > 0 && item.answered % every === 0 && item.answered < item.total_all) {
      $("break-text").textContent =
        `You have rated ${item.answered} images. A short break keeps judgements fresh: ` +
        "your answers are saved, and you can continue now or later.";
      breakEl.hidden = false;
    }
  }

  /* ---- Showing an item: inputs stay disabled until its image has decoded. */
  function show(item, opts) {
    const o = opts || {};
    shownSeq += 1;
    const seq = shownSeq;
    current = item;
    revising = !!o.revising; // reset on every item: only a revision sets it
    choice = o.preset ? { answer: o.preset.answer, confidence: o.preset.confidence } : { answer: null, confidence: null };
    pendingBody = null;
    feedbackEl.hidden = true;
    for (const el of document.querySelectorAll(".needs")) el.classList.remove("needs");
    showProgress(item);
    mode = "decoding";
    setStatus("");
    render();
    img.classList.remove("ready");
    if (img.getAttribute("src") !== item.image_url) img.src = item.image_url;
    img.decode().then(
      () => seq === shownSeq && imageReady(),
      () => seq === shownSeq && imageFailed(),
    );
    if (item.preload_url) preloader.src = item.preload_url;
    if (o.checkFlag) refreshFlag(item, seq);
  }

  function imageReady() {
    viewer.fit();
    img.classList.add("ready");
    mode = "rating";
    const resumed = carried && carried.item === current.item ? carried.seconds : 0;
    carried = null;
    clock.start(resumed);
    render();
    viewport.focus({ preventScroll: true });
  }

  function imageFailed() {
    mode = "broken";
    render();
    setStatus("This image could not be loaded, so it cannot be rated. Press Enter or reload the page to try again; your answers are saved.", true);
  }

  function retryImage() {
    setStatus("Loading the image again…");
    img.removeAttribute("src");
    const item = current;
    current = null;
    show(item, { revising: revising, preset: revising ? choice : null });
  }

  /* A next-item body (from GET next, or `next` in an answer's response): show it, or finish. */
  function showNext(body, opts) {
    if (body.done) {
      mode = "stopped";
      render();
      window.location.assign(cfg.finish_url);
      return;
    }
    show(Object.assign({}, body, { place: Math.min(body.answered + 1, body.total_all) }), opts);
  }

  async function loadNext() {
    mode = "loading";
    revising = false;
    render();
    let res;
    try {
      res = await api(cfg.next_url, { method: "GET", headers: { Accept: "application/json" } });
    } catch (err) {
      mode = "stopped";
      render();
      setStatus("Cannot reach the server. Your answers so far are saved; reload the page to continue.", true);
      return;
    }
    // An item served by GET next may have been shown (and flagged) before this page was loaded:
    // ask for its flag. One answered with the previous answer is new (no request per answer).
    if (res.status === 200 && res.body) return showNext(res.body, { checkFlag: true });
    mode = "stopped";
    render();
    if (res.status === 403) setStatus("Your session has ended: log in again to continue (your answers are saved).", true);
    else setStatus((res.body && res.body.detail) || `Unexpected answer from the server (${res.status}).`, true);
  }

  /* ---- Answering. */
  function enter() {
    if (mode === "feedback") return loadNext();
    if (mode === "broken") return retryImage();
    if (mode === "saving") return cue("Still saving your answer: Enter ignored.");
    if (mode !== "rating") return cue("Wait for the image: Enter ignored.");
    if (choice.answer === null && choice.confidence === null) {
      return hint("Choose Real (R) or AI-generated (A), and a confidence, then press Enter.", "answers");
    }
    if (choice.answer === null) return hint("Choose Real (R) or AI-generated (A) first, then press Enter.", "answers");
    if (choice.confidence === null) return hint(`Choose a confidence (${levelRange()}) first, then press Enter.`, "scale");
    return submit();
  }

  function levelRange() {
    const keys = levelBtns.map((b) => b.dataset.key).filter(Boolean);
    return keys.length ? `${keys[0]}–${keys[keys.length - 1]}` : "a level";
  }

  async function submit() {
    mode = "saving";
    breakEl.hidden = true;
    const seconds = clock.stop();
    render();
    setStatus("Saving…");
    // One client_id per answer: a retry of this very answer resends it unchanged.
    if (!pendingBody || pendingBody.answer !== choice.answer || pendingBody.confidence !== choice.confidence) {
      pendingBody = {
        item: current.item,
        answer: choice.answer,
        confidence: choice.confidence,
        client_id: uuid4(),
        include_next: true,
        active_seconds: seconds,
      };
    }
    let res;
    try {
      res = await api(cfg.responses_url, { method: "POST", headers: jsonHeaders(), body: JSON.stringify(pendingBody) });
    } catch (err) {
      return backToRating("Could not save this answer (no connection). Press Enter to try again; nothing is lost.");
    }
    if (res.status === 200 || res.status === 201) {
      if (!revising) rememberTime(pendingBody.active_seconds);
      // Practice answers are not revised: their right answer has just been shown.
      previous = current.practice ? null : Object.assign({}, current, { answer: choice.answer, confidence: choice.confidence });
      pendingBody = null;
      if (res.body && res.body.feedback) return showFeedback(res.body.feedback);
      if (res.body && res.body.next) {
        if (!res.body.next.done && !revising) maybeBreak(res.body.next);
        return showNext(res.body.next);
      }
      return loadNext(); // no next item in the answer (the study was closed meanwhile): ask
    }
    if (res.status === 409 && res.body && res.body.code === "already_answered") {
      setStatus("This image was answered already (in another tab?); moving on.");
      return loadNext();
    }
    if (res.status === 403) {
      mode = "stopped";
      render();
      setStatus("Your session has ended: log in again to continue (saved answers are kept).", true);
      return;
    }
    if (res.status === 409) {
      mode = "stopped";
      render();
      setStatus((res.body && res.body.detail) || "The answer was refused (409).", true);
      return;
    }
    backToRating((res.body && res.body.detail) || `The answer was refused (${res.status}).`);
  }

  function backToRating(message) {
    mode = "rating";
    clock.start(pendingBody ? pendingBody.active_seconds : 0);
    render();
    setStatus(message, true);
  }

  function showFeedback(feedback) {
    mode = "feedback";
    render();
    setStatus("");
    const truth = feedback.truth === "real" ? "real" : "AI-generated";
    $("feedback-text").textContent = feedback.correct
      ? `Correct: this practice image is ${truth}.`
      : `Not quite: this practice image is ${truth}.`;
    feedbackEl.classList.toggle("correct", !!feedback.correct);
    feedbackEl.hidden = false;
    $("feedback-next").focus({ preventScroll: true });
  }

  function startRevision() {
    if (!cfg.allow_revision || !previous || revising || mode !== "rating") return;
    carried = { item: current.item, seconds: clock.stop() };
    show(previous, { revising: true, preset: previous });
  }

  function pick(what, value) {
    if (mode !== "rating") return ignored();
    choice[what] = value;
    for (const el of document.querySelectorAll(".needs")) el.classList.remove("needs");
    if (statusEl.classList.contains("error")) setStatus("");
    render();
  }

  function ignored() {
    if (mode === "saving" || mode === "loading") cue("Key ignored: your answer is being saved. Answer the next image when it is shown.");
    else if (mode === "decoding") cue("Key ignored: wait until the image is shown.");
    else if (mode === "broken") cue("Key ignored: this image could not be loaded (Enter tries again).");
    else if (mode === "feedback") cue("Press Enter for the next image.");
  }

  /* ---- Flags: "something is wrong with this image", with an optional comment; never the answer. */
  const canFlag = () => current !== null && ["rating", "broken", "feedback", "decoding"].includes(mode);
  const flagUrl = (token) => cfg.flag_url.replace("__token__", encodeURIComponent(token));

  const isFlagged = () => !!(current && current.flag && current.flag.flagged);

  async function refreshFlag(item, seq) {
    let res;
    try {
      res = await api(flagUrl(item.item), { method: "GET", headers: { Accept: "application/json" } }, 1);
    } catch (err) {
      return;
    }
    if (res.status !== 200 || !res.body) return;
    item.flag = { flagged: !!res.body.flagged, comment: res.body.comment || "" };
    if (seq === shownSeq) render();
  }

  function openFlag() {
    if (!canFlag()) return ignored();
    flagComment.value = (current.flag && current.flag.comment) || "";
    $("flag-remove").hidden = !isFlagged();
    $("flag-error").textContent = "";
    flagDialog.dataset.item = current.item;
    flagDialog.showModal();
    flagComment.focus();
  }

  async function saveFlag(remove) {
    const token = flagDialog.dataset.item;
    const opts = remove
      ? { method: "DELETE", headers: jsonHeaders() }
      : { method: "PUT", headers: jsonHeaders(), body: JSON.stringify({ comment: flagComment.value }) };
    let res;
    try {
      res = await api(flagUrl(token), opts, 2);
    } catch (err) {
      $("flag-error").textContent = "Could not save the flag (no connection); try again.";
      return;
    }
    if (res.status !== 200) {
      $("flag-error").textContent = (res.body && res.body.detail) || `The flag was refused (${res.status}).`;
      return;
    }
    if (current && current.item === token) current.flag = { flagged: !!res.body.flagged, comment: res.body.comment || "" };
    flagDialog.close();
    render();
    cue(isFlagged() ? "Image flagged. Your answer is unchanged." : "Flag removed.");
  }

  $("flag-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveFlag(false);
  });
  $("flag-remove").addEventListener("click", () => saveFlag(true));
  $("flag-cancel").addEventListener("click", () => flagDialog.close());
  flagComment.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      saveFlag(false);
    }
  });
  flagDialog.addEventListener("close", () => viewport.focus({ preventScroll: true }));

  /* ---- Wiring. */
  for (const b of answerBtns) b.addEventListener("click", () => pick("answer", b.dataset.answer));
  for (const b of levelBtns) b.addEventListener("click", () => pick("confidence", Number(b.dataset.confidence)));
  submitBtn.addEventListener("click", enter);
  if (backBtn) backBtn.addEventListener("click", startRevision);
  flagBtn.addEventListener("click", openFlag);
  $("feedback-next").addEventListener("click", () => mode === "feedback" && loadNext());
  $("break-close").addEventListener("click", () => (breakEl.hidden = true));
  $("view-fit").addEventListener("click", () => viewer.fit());
  $("view-native").addEventListener("click", () => viewer.native());

  const levelByKey = new Map(levelBtns.filter((b) => b.dataset.key).map((b) => [b.dataset.key, Number(b.dataset.confidence)]));

  document.addEventListener("keydown", (ev) => {
    if (flagDialog.open) return; // typing a comment: no shortcut applies (Escape closes the dialog)
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    if (ev.target instanceof HTMLAnchorElement) return; // Enter on a focused link follows it
    const key = ev.key;
    if (key === "Enter") {
      // Enter on a focused tool button (flag, theme, views, back) presses it; on an answer or
      // confidence button it saves, as anywhere else.
      if (ev.target instanceof HTMLButtonElement && !ev.target.matches(".answer, .level, #submit, #feedback-next")) return;
      ev.preventDefault();
      enter();
      return;
    }
    const k = key.length === 1 ? key.toLowerCase() : key;
    if (k === "r") pick("answer", "real");
    else if (k === "a") pick("answer", "synthetic");
    else if (levelByKey.has(key)) pick("confidence", levelByKey.get(key));
    else if (k === "+" || k === "=") viewer.zoomIn();
    else if (k === "-") viewer.zoomOut();
    else if (k === "0") viewer.fit();
    else if (k === "n") viewer.native();
    else if (k === "b") startRevision();
    else if (k === "f") openFlag();
    else if (k === "d") window.HistoTheme.toggle();
    else return;
    ev.preventDefault();
  });

  loadNext();
})();
