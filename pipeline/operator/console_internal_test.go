package operator

import "testing"

func TestReasonPatternKeepsTheCauseAndDropsTheValues(t *testing.T) {
	for in, want := range map[string]string{
		`activities[3]: delete on table "customers": table not found`:                                  `activities[*]: delete on table "customers": table not found`,
		`activities[0]: insert on table "orders": column "total" is NUMERIC, the payload gives STRING`: `activities[*]: insert on table "orders": column "total" is NUMERIC, the payload gives STRING`,
		`sqlite begin: database is locked (5) (SQLITE_BUSY)`:                                           `sqlite begin: database is locked (<n>) (SQLITE_BUSY)`,
		`payload 3f2a9c1e-0b7d-4e55-9a31-2c8f0e6d7b10 value "12 apples" out of range 1e9`:              `payload <id> value <value> out of range 1e9`,
	} {
		if got := ReasonPattern(in); got != want {
			t.Errorf("ReasonPattern(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}
