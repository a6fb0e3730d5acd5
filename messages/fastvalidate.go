package messages

import "unicode/utf8"

// Evaluating the compiled schema.json on what the fast decoder read, as
// qri-io/jsonschema evaluates it on the generic tree: every keyword of a
// node must hold; a keyword about another kind of value (minItems on a
// string) is ignored, as the JSON Schema specification and qri do; a oneOf
// holds when exactly one branch does. Only validity is computed, never a
// message: a document this refuses takes the checked path, which says why.

// valid reports whether the decoded document matches the schema.
func (s *fastSchema) valid(d *fastDecoder) bool {
	return s.root.validObject(d.present, func(f field, n *schemaNode) bool {
		if f == fieldOrderingKey {
			return n.validString(d.bytes(d.orderingKey))
		}
		return n.validActivities(d)
	})
}

func (n *schemaNode) validType(want string) bool { return n.typ == "" || n.typ == want }

func (n *schemaNode) validString(b []byte) bool {
	if !n.validType("string") {
		return false
	}
	if n.minLength > 0 || n.maxLength >= 0 {
		// qri counts characters (utf8.RuneCountInString), not bytes.
		c := utf8.RuneCount(b)
		if c < n.minLength || n.maxLength >= 0 && c > n.maxLength {
			return false
		}
	}
	if n.hasEnum {
		found := false
		for _, member := range n.enum {
			if string(b) == member {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if n.hasConst && string(b) != n.constant {
		return false
	}
	return n.validOneOf(func(branch *schemaNode) bool { return branch.validString(b) })
}

// validOneOf reports whether n's oneOf, if any, holds: exactly one branch
// valid.
func (n *schemaNode) validOneOf(valid func(*schemaNode) bool) bool {
	if len(n.oneOf) == 0 {
		return true
	}
	matched := 0
	for _, branch := range n.oneOf {
		if valid(branch) {
			matched++
		}
	}
	return matched == 1
}

func (n *schemaNode) validLength(count int) bool {
	return n.validType("array") && count >= n.minItems && (n.maxItems < 0 || count <= n.maxItems)
}

func (n *schemaNode) validActivities(d *fastDecoder) bool {
	if !n.validLength(len(d.acts)) {
		return false
	}
	if n.items != nil {
		for i := range d.acts {
			if !n.items.validActivity(d, &d.acts[i]) {
				return false
			}
		}
	}
	return n.validOneOf(func(branch *schemaNode) bool { return branch.validActivities(d) })
}

func (n *schemaNode) validActivity(d *fastDecoder, a *fastActivity) bool {
	return n.validObject(a.present, func(f field, child *schemaNode) bool {
		switch f {
		case fieldOperation:
			return child.validString(d.bytes(a.operation))
		case fieldTable:
			return child.validString(d.bytes(a.table))
		case fieldValueToDelete:
			return child.validRow(d, &a.del)
		}
		return child.validColumn(d, f, &a.top)
	})
}

func (n *schemaNode) validRow(d *fastDecoder, r *fastRow) bool {
	return n.validObject(r.present, func(f field, child *schemaNode) bool {
		return child.validColumn(d, f, r)
	})
}

func (n *schemaNode) validColumn(d *fastDecoder, f field, r *fastRow) bool {
	switch f {
	case fieldColNames:
		return n.validStrings(d, r.names)
	case fieldColTypes:
		return n.validStrings(d, r.types)
	}
	// compileFastSchema refuses items on col_values: only their count is
	// the schema's business.
	return n.validLength(r.values.len()) &&
		n.validOneOf(func(branch *schemaNode) bool { return branch.validColumn(d, f, r) })
}

func (n *schemaNode) validStrings(d *fastDecoder, s span) bool {
	if !n.validLength(s.len()) {
		return false
	}
	if n.items != nil {
		for _, t := range d.strs[s.lo:s.hi] {
			if !n.items.validString(d.bytes(t)) {
				return false
			}
		}
	}
	return n.validOneOf(func(branch *schemaNode) bool { return branch.validStrings(d, s) })
}

// validObject checks an object holding the properties present, whose
// values child validates against a subschema.
func (n *schemaNode) validObject(present fieldSet, child func(field, *schemaNode) bool) bool {
	if !n.validType("object") || n.required&^present != 0 || n.hasAllowed && present&^n.allowed != 0 {
		return false
	}
	for f, sub := range n.properties {
		if sub != nil && present.has(field(f)) && !child(field(f), sub) {
			return false
		}
	}
	return n.validOneOf(func(branch *schemaNode) bool { return branch.validObject(present, child) })
}
