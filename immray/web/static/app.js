// Activity: refresh the task table every second while a task runs (no framework; the JSON comes from
// /ui/.../activity.json, the same ListTasks call the page made).
(function () {
  const table = document.querySelector("[data-tasks-url]");
  if (!table) return;
  const body = table.querySelector("tbody");
  function row(task) {
    const tr = document.createElement("tr");
    tr.dataset.status = task.Status;
    for (const text of [task.TaskId, task.TaskType, task.Status]) {
      const td = document.createElement("td"); td.textContent = text || ""; tr.appendChild(td);
    }
    const td = document.createElement("td");
    const bar = document.createElement("progress"); bar.max = 100; bar.value = task.Progress || 0;
    td.appendChild(bar); td.append(" " + (task.Progress || 0) + "%"); tr.appendChild(td);
    for (const text of [task.StartTime, task.EndTime, task.Message]) {
      const c = document.createElement("td"); c.textContent = text || ""; tr.appendChild(c);
    }
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
