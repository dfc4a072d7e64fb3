// Sortable tables: a click on a column's header sorts the rows by that column
// (numbers largest first, text A to Z; a second click reverses). Cells carry
// their sort value in data-v; nothing is read from anywhere else.
(function () {
  "use strict";
  function value(row, column, numeric) {
    var raw = row.cells[column].getAttribute("data-v");
    if (!numeric) { return raw === null ? row.cells[column].textContent : raw; }
    var number = parseFloat(raw);
    return isNaN(number) ? -Infinity : number;
  }
  function sortBy(table, header, column) {
    var numeric = header.getAttribute("data-type") === "num";
    var wasDescending = header.getAttribute("aria-sort") === "descending";
    var wasSorted = header.hasAttribute("aria-sort");
    var descending = wasSorted ? !wasDescending : numeric;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, column, numeric), y = value(b, column, numeric);
      var order = numeric ? x - y : String(x).localeCompare(String(y));
      if (order === 0 || isNaN(order)) { order = a.getAttribute("data-i") - b.getAttribute("data-i"); return order; }
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      var button = header.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortBy(table, header, column); }); }
    });
  });
})();
