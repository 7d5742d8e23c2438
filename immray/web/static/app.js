// The page's little JavaScript (no framework): times in the reader's zone, the activity page's live task
// table, and the move picker's search as one types. Every page works without it.

// Times: <time datetime="RFC 3339"> as "today 14:03" / "yesterday 09:12" / "3 Dec 09:12" / "3 Dec 2025 09:12"
// in the browser's zone, with the exact local value (to the microsecond the server gave) on hover.
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad = (n) => String(n).padStart(2, "0");

function readableTime(iso, now = new Date()) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const day = (x) => `${x.getFullYear()}-${x.getMonth()}-${x.getDate()}`;
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (day(d) === day(now)) return `today ${clock}`;
  if (day(d) === day(yesterday)) return `yesterday ${clock}`;
  const year = d.getFullYear() === now.getFullYear() ? "" : ` ${d.getFullYear()}`;
  return `${d.getDate()} ${MONTHS[d.getMonth()]}${year} ${clock}`;
}

function exactTime(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const fraction = (/\.(\d+)/.exec(iso) || ["", "000"])[1];
  const offset = -d.getTimezoneOffset();
  const zone = `UTC${offset < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${fraction} ${zone}`;
}

function timeElement(iso) {
  const t = document.createElement("time");
  if (!iso) return t;
  t.dateTime = iso;
  t.textContent = readableTime(iso);
  t.title = exactTime(iso);
  return t;
}

function localizeTimes(root = document) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const text = readableTime(t.dateTime);
    if (text) {
      t.textContent = text;
      t.title = exactTime(t.dateTime);
    }
  }
}
localizeTimes();

// Activity: refresh the task table every second (the JSON comes from /ui/.../activity.json, the same
// ListTasks call the page made); rows carry their column names for the phone layout.
(function () {
  const table = document.querySelector("[data-tasks-url]");
  if (!table) return;
  const body = table.querySelector("tbody");
  function cell(tr, label, content, className) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (className) td.className = className;
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content || "";
    tr.appendChild(td);
    return td;
  }
  function row(task) {
    const tr = document.createElement("tr");
    tr.dataset.status = task.Status;
    cell(tr, "Task", task.TaskId, "id");
    cell(tr, "Type", task.TaskType);
    cell(tr, "Status", task.Status);
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = task.Progress || 0;
    cell(tr, "Progress", bar).append(" " + (task.Progress || 0) + "%");
    cell(tr, "Started", timeElement(task.StartTime));
    cell(tr, "Ended", timeElement(task.EndTime));
    cell(tr, "Took", task.Took, "took");
    cell(tr, "Message", task.Message);
    return tr;
  }
  async function refresh() {
    try {
      const answer = await fetch(table.dataset.tasksUrl, { credentials: "same-origin" });
      if (answer.ok) {
        const data = await answer.json();
        body.replaceChildren(...data.Tasks.map(row));
      }
    } finally {
      setTimeout(refresh, 1000);
    }
  }
  setTimeout(refresh, 1000);
})();

// The move picker: the people found by name follow the search box as one types (the same GET the form
// sends; its answer's #matches replaces this one).
(function () {
  const form = document.getElementById("find-form");
  const matches = document.getElementById("matches");
  if (!form || !matches) return;
  const box = form.querySelector("input[name=q]");
  let timer = null;
  let asked = 0;
  box.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ask = ++asked;
      const url = `${location.pathname}?${new URLSearchParams(new FormData(form))}`;
      const answer = await fetch(url, { credentials: "same-origin" });
      if (!answer.ok || ask !== asked) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const found = page.getElementById("matches");
      if (found) matches.replaceChildren(...found.childNodes);
      history.replaceState(null, "", url);
    }, 250);
  });
})();
