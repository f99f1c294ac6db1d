// herald's chat page, made live over /ws with the protocol of docs/chat-protocol.md.
// Without this script the page still works: forms post, and a reload shows new messages.
//
// The socket authenticates with a ticket from POST /chat/ticket (a login token that lives
// five minutes), asked for before every connection; the session cookie stays HttpOnly.
// A dropped connection is resumed with the last `seq` seen, so nothing is lost; when herald
// answers 410 the page authenticates again and loads the latest history.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root || !window.WebSocket || !window.fetch) {
    return;
  }
  var me = root.dataset.me;
  var chatId = root.dataset.chatId || null;
  var list = document.getElementById("messages");
  var form = document.getElementById("compose");
  var input = document.getElementById("message-text");
  var typingLine = document.getElementById("typing");
  var statusBadge = document.getElementById("chat-status");
  var csrfInput = document.querySelector("input[name=csrf]");
  var HEARTBEAT_MS = 25000;
  var PAGE = 50;

  var socket = null;
  var session = null;
  var lastSeq = 0;
  var authed = false;
  var retry = 0;
  var heartbeat = null;
  var typingSent = 0;
  var typingTimer = null;
  var nonceCount = 0;
  var held = false;
  // A form of this page is posting (and the browser is leaving for its answer): a frame that
  // the post itself caused must not send the page elsewhere first.
  var posting = false;
  document.addEventListener("submit", function (event) {
    if (!event.defaultPrevented) {
      posting = true;
    }
  });
  window.addEventListener("pageshow", function () {
    posting = false;
  });

  function setStatus(name) {
    statusBadge.textContent = root.dataset["status" + name] || "";
    statusBadge.className = "badge" + (name === "Live" ? " ok" : "");
    root.dataset.state = name.toLowerCase();
  }

  function send(type, payload) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: type, payload: payload }));
      return true;
    }
    return false;
  }

  function nameOf(userId) {
    if (userId === me) {
      return root.dataset.myName;
    }
    var person = root.querySelector('[data-user-id="' + userId + '"]');
    return person ? person.dataset.name : "?";
  }

  // "2026-12-07 01:02:03.456789" -> "2026-12-07 01:02 UTC", as the server renders it.
  function shown(createdAt) {
    return createdAt.slice(0, 16) + " UTC";
  }

  function showMessage(m) {
    if (!list || m.chat_id !== chatId) {
      return;
    }
    var existing = list.querySelector('[data-id="' + m.id + '"]');
    if (m.type === "edit") {
      if (existing) {
        if (m.content === "") {
          existing.remove();
        } else {
          existing.querySelector(".content").textContent = m.content;
        }
      }
      return;
    }
    if (existing) {
      return;
    }
    var item = document.createElement("li");
    item.className = "message" + (m.user_id === me ? " mine" : "");
    item.dataset.id = m.id;
    item.dataset.at = m.created_at;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = nameOf(m.user_id);
    var when = document.createElement("time");
    when.className = "small";
    when.textContent = shown(m.created_at);
    var content = document.createElement("p");
    content.className = "content";
    content.textContent = m.content;
    item.append(who, " ", when, content);
    // Kept in time order whether it is live or loaded history.
    var after = null;
    var items = list.children;
    for (var i = items.length - 1; i >= 0; i--) {
      if (items[i].dataset.at <= m.created_at) {
        after = items[i];
        break;
      }
    }
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    if (after) {
      after.after(item);
    } else {
      list.prepend(item);
    }
    var empty = document.getElementById("no-messages");
    if (empty) {
      empty.remove();
    }
    if (m.user_id !== me) {
      clearTyping();
    }
    if (atBottom && item === list.lastElementChild) {
      item.scrollIntoView({ block: "end" });
    }
  }

  function loadBefore(createdAt) {
    send("load", { type: "chat", load_id: chatId, datetime: btoa(createdAt), count: PAGE });
  }

  // When each person's presence was last told by a frame: an answer to refreshPresence asked
  // before that is older news and does not undo it.
  var presenceToldAt = {};

  function setPresence(user, status) {
    root.querySelectorAll('[data-user-id="' + user.id + '"] .presence').forEach(function (badge) {
      badge.textContent = root.dataset[status] || status;
      badge.className = "badge presence" + (status === "online" ? " ok" : "");
    });
  }

  // Presence frames tell changes only: after (re)connecting, ask who is online now.
  function refreshPresence() {
    var askedAt = Date.now();
    fetch("/chat/presence", { credentials: "same-origin" })
      .then(function (answer) {
        return answer.ok ? answer.json() : { online: null, friends: [] };
      })
      .then(function (now) {
        if (!now.online) {
          return;
        }
        root.querySelectorAll(".people [data-user-id]").forEach(function (person) {
          var id = person.dataset.userId;
          if (now.friends.indexOf(id) < 0) {
            return; // a room member who is not a friend: herald does not tell
          }
          if ((presenceToldAt[id] || 0) >= askedAt) {
            return; // a presence frame came after the question: it is newer
          }
          setPresence({ id: id }, now.online.indexOf(id) >= 0 ? "online" : "offline");
        });
      })
      .catch(function () {});
  }

  function clearTyping() {
    if (typingLine) {
      typingLine.textContent = "";
    }
  }

  function showTyping(userId) {
    if (!typingLine || userId === me) {
      return;
    }
    typingLine.textContent = nameOf(userId) + " " + root.dataset.typing;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(clearTyping, 4000);
  }

  function onFrame(frame) {
    if (typeof frame.seq === "number") {
      lastSeq = frame.seq;
    }
    var p = frame.payload || {};
    switch (frame.type) {
      case "heartbeat":
        if (!authed && p.start) {
          join();
        }
        break;
      case "auth":
        authed = true;
        session = p.session;
        retry = 0;
        setStatus("Live");
        refreshPresence();
        // Anything written while the page had no socket.
        if (chatId) {
          loadBefore("9999-12-31 23:59:59.000000");
        }
        break;
      case "resumed":
        authed = true;
        retry = 0;
        setStatus("Live");
        refreshPresence();
        root.dataset.replayed = String(p.replayed);
        break;
      case "chat":
        showMessage(p);
        if (chatId && p.chat_id === chatId && p.user_id !== me && document.visibilityState === "visible") {
          markRead(p.created_at);
        }
        break;
      case "presence":
        presenceToldAt[p.user.id] = Date.now();
        setPresence(p.user, p.status);
        break;
      case "typing":
        if (p.chat_id === chatId) {
          showTyping(p.user_id);
        }
        break;
      case "mutual_users":
      case "room":
        // Friends or rooms changed: the list page shows them as the server has them.
        // (Not a reload: the list may be the answer to a posted form.)
        if (!chatId && !posting) {
          window.location.replace("/chat");
        }
        break;
      case "error":
        if (p.code === 410) {
          // The session is gone: start a new one and load the history.
          session = null;
          lastSeq = 0;
          join();
        }
        break;
    }
  }

  // A message shown on this conversation's page is read: the dashboard stops counting it.
  function markRead(createdAt) {
    var body = new URLSearchParams();
    body.set("csrf", csrfInput ? csrfInput.value : "");
    body.set("up_to", createdAt || "");
    fetch("/chat/" + chatId + "/read", { method: "POST", body: body, credentials: "same-origin" })
      .catch(function () {});
  }

  // Asks for a ticket, then authenticates: `resume` when there is a session to go on with.
  function join() {
    var body = new URLSearchParams();
    body.set("csrf", csrfInput ? csrfInput.value : "");
    fetch("/chat/ticket", { method: "POST", body: body, credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("ticket " + answer.status);
        }
        return answer.json();
      })
      .then(function (ticket) {
        if (session) {
          send("resume", { session: session, auth: ticket.token, last_seq: lastSeq });
        } else {
          send("auth", { auth: ticket.token });
        }
      })
      .catch(function () {
        if (socket) {
          socket.close();
        }
      });
  }

  function connect() {
    setStatus(session ? "Lost" : "Connecting");
    authed = false;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + window.location.host + "/ws");
    socket = ws;
    ws.onopen = function () {
      ws.send(JSON.stringify({ type: "heartbeat", payload: { start: true } }));
      heartbeat = setInterval(function () {
        send("heartbeat", {});
      }, HEARTBEAT_MS);
    };
    ws.onmessage = function (event) {
      try {
        onFrame(JSON.parse(event.data));
      } catch (e) {
        // A frame this page does not understand is skipped.
      }
    };
    ws.onclose = function () {
      clearInterval(heartbeat);
      if (socket !== ws) {
        return;
      }
      socket = null;
      authed = false;
      setStatus("Lost");
      if (held) {
        return;
      }
      retry = Math.min(retry + 1, 5);
      setTimeout(connect, 500 * retry * retry);
    };
  }

  if (form && input) {
    form.addEventListener("submit", function (event) {
      var text = input.value.trim();
      if (!authed || text === "") {
        return; // the form posts as without JavaScript
      }
      nonceCount += 1;
      var nonce = session + "-" + Date.now() + "-" + nonceCount;
      if (send("chat", { type: "send", chat_id: chatId, content: text, nonce: nonce.slice(-100) })) {
        event.preventDefault();
        input.value = "";
        input.focus();
      }
    });
    input.addEventListener("input", function () {
      var now = Date.now();
      if (authed && now - typingSent > 3000) {
        typingSent = now;
        send("typing", { chat_id: chatId });
      }
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }

  var older = document.getElementById("older");
  if (older && list) {
    older.addEventListener("click", function (event) {
      var first = list.firstElementChild;
      if (authed && first) {
        event.preventDefault();
        loadBefore(first.dataset.at);
      }
    });
  }

  // The page's connection from outside (the browser test drops it to check `resume`):
  // `drop(true)` closes the socket and waits for `reconnect()`; `drop()` reconnects at once.
  window.heraldChat = {
    drop: function (hold) {
      held = !!hold;
      if (socket) {
        socket.close();
      }
    },
    reconnect: function () {
      held = false;
      if (!socket) {
        connect();
      }
    }
  };

  // Leaving the page closes its socket at once (the browser may otherwise keep it open while
  // it keeps the page for "back"), so friends see the right presence; coming back resumes.
  window.addEventListener("pagehide", function () {
    window.heraldChat.drop(true);
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      window.heraldChat.reconnect();
    }
  });

  connect();
})();
