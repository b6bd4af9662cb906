package postgres

import "github.com/jackc/pgx/v5/pgtype"

// The insert's column arrays go to pgx as these types rather than plain
// slices. pgx's wrapper for a slice hands out each element as an
// interface value, which for a string (or a number above 255) is an
// allocation per element: four or five per appended event. These hand out
// pointers to the elements instead, typed so that pgx encodes them without
// reflection.

// textArray is a text[] parameter.
type textArray []string

// Dimensions implements [pgtype.ArrayGetter].
func (a textArray) Dimensions() []pgtype.ArrayDimension { return dimensions(len(a), a == nil) }

// Index implements [pgtype.ArrayGetter].
func (a textArray) Index(i int) any { return (*textElem)(&a[i]) }

// IndexType implements [pgtype.ArrayGetter].
func (a textArray) IndexType() any { return (*textElem)(nil) }

type textElem string

func (e *textElem) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: string(*e), Valid: true}, nil
}

// int4Array is an int4[] parameter.
type int4Array []int32

// Dimensions implements [pgtype.ArrayGetter].
func (a int4Array) Dimensions() []pgtype.ArrayDimension { return dimensions(len(a), a == nil) }

// Index implements [pgtype.ArrayGetter].
func (a int4Array) Index(i int) any { return (*int4Elem)(&a[i]) }

// IndexType implements [pgtype.ArrayGetter].
func (a int4Array) IndexType() any { return (*int4Elem)(nil) }

type int4Elem int32

func (e *int4Elem) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(*e), Valid: true}, nil
}

// int8Array is an int8[] parameter.
type int8Array []int64

// Dimensions implements [pgtype.ArrayGetter].
func (a int8Array) Dimensions() []pgtype.ArrayDimension { return dimensions(len(a), a == nil) }

// Index implements [pgtype.ArrayGetter].
func (a int8Array) Index(i int) any { return (*int8Elem)(&a[i]) }

// IndexType implements [pgtype.ArrayGetter].
func (a int8Array) IndexType() any { return (*int8Elem)(nil) }

type int8Elem int64

func (e *int8Elem) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(*e), Valid: true}, nil
}

// dimensions describes a one-dimensional array of n elements, or NULL.
func dimensions(n int, null bool) []pgtype.ArrayDimension {
	if null {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(n), LowerBound: 1}}
}
