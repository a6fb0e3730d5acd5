package operator

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gatekeeper/gatekeeper/warehouse"
)

// AdminTablesPath is where the admin API shows what was applied: the
// warehouse's tables, and a table's rows under it, so that `gatekeeper
// tables` and `gatekeeper rows` ask the running service instead of opening
// a warehouse themselves.
const AdminTablesPath = "/api/tables"

// adminTables answers {"tables": [...]}.
func adminTables(c *Console, w http.ResponseWriter, r *http.Request) {
	tables, err := c.store.Tables(r.Context())
	if err != nil {
		WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	if tables == nil {
		tables = []string{}
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"tables": tables})
}

// adminRows answers {"rows": [...]}: up to ?limit= rows (default 100, 0
// for all) of the table, ordered by every column; 404 for a table the
// warehouse does not have.
func adminRows(c *Console, w http.ResponseWriter, r *http.Request) {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			WriteError(w, http.StatusBadRequest, errors.New("limit "+strconv.Quote(l)+": want a number, 0 for all"))
			return
		}
		limit = n
	}
	rows, err := c.store.Rows(r.Context(), r.PathValue("table"), limit)
	switch {
	case errors.Is(err, warehouse.ErrTableNotFound):
		WriteError(w, http.StatusNotFound, err)
	case err != nil:
		WriteError(w, http.StatusServiceUnavailable, err)
	default:
		if rows == nil {
			rows = []map[string]any{}
		}
		writeAdminJSON(w, http.StatusOK, map[string]any{"rows": rows})
	}
}

// adminExport answers the selected payloads as `poison export` writes
// them: JSON lines of payload_id, metadata and payload, to edit and replay.
func adminExport(c *Console, w http.ResponseWriter, r *http.Request) {
	f, ok := queryFilter(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	n, err := c.Export(r.Context(), f, w)
	if err != nil && n == 0 {
		WriteError(w, http.StatusServiceUnavailable, err)
	}
	// Export reads every entry before it writes a line: a failure after
	// the first line is the client going away.
}
