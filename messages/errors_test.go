package messages

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestClassOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ""},
		{"transient", Transient(errors.New("busy")), ClassTransient},
		{"permanent", Permanent(errors.New("no table")), ClassPermanent},
		{"outermost wins", Permanent(fmt.Errorf("give up: %w", Transient(errors.New("busy")))), ClassPermanent},
		{"validation", fmt.Errorf("gate: %w", &ValidationError{}), ClassInvalid},
		{"syntax", &SyntaxError{Err: errors.New("eof")}, ClassInvalid},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), ClassTransient},
		{"canceled", fmt.Errorf("shutdown: %w", context.Canceled), ClassTransient},
		{"refused", fmt.Errorf("front door: %w", Refused(errors.New("over quota"))), ClassRefused},
		{"outage", Outage(errors.New("disk full")), ClassOutage},
		// Nobody said it is worth retrying: it is a bug, not "retry".
		{"unclassified", errors.New("nil map"), ClassPermanent},
	}
	for _, c := range cases {
		if got := ClassOf(c.err); got != c.want {
			t.Errorf("%s: ClassOf(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
}

// Every rejection names the rules it broke, from the fixed set, so that
// metrics count rejections by rule without free text.
func TestValidationErrorNamesItsRules(t *testing.T) {
	ins := func(names, types, values string) string {
		return `{"activities":[{"operation":"insert","table":"t","col_names":` + names + `,"col_types":` + types + `,"col_values":` + values + `}]}`
	}
	cases := []struct {
		body string
		want []Rule
	}{
		{`{"activities":[{"operation":"upsert","table":"t"}]}`, []Rule{RuleSchema}},
		{ins(`["a","b"]`, `["INTEGER"]`, `[1,2]`), []Rule{RuleLengthMismatch}},
		{ins(`["a-b"]`, `["INTEGER"]`, `[1]`), []Rule{RuleIdentifier}},
		{ins(`["a","A"]`, `["INTEGER","INTEGER"]`, `[1,2]`), []Rule{RuleDuplicateColumn}},
		{ins(`["a"]`, `["BLOB9"]`, `[1]`), []Rule{RuleUnknownType}},
		{ins(`["a"]`, `["INTEGER"]`, `["x"]`), []Rule{RuleValueType}},
		{ins(`["a","a-b"]`, `["INTEGER","INTEGER"]`, `["x",1]`), []Rule{RuleIdentifier, RuleValueType}},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.body))
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: %v, want a ValidationError", c.body, err)
			continue
		}
		if fmt.Sprint(ve.Rules) != fmt.Sprint(c.want) {
			t.Errorf("%s: rules %v, want %v (%v)", c.body, ve.Rules, c.want, err)
		}
	}
	many := `{"activities":[` + strings.Repeat(`{},`, MaxActivities) + `{}]}`
	if _, err := Parse([]byte(many)); err == nil || fmt.Sprint(err.(*ValidationError).Rules) != fmt.Sprint([]Rule{RuleLimits}) {
		t.Errorf("%d activities: %v, want the limits rule", MaxActivities+1, err)
	}
}
