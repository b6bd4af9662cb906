package persistence

import (
	"errors"
	"fmt"
	"reflect"
)

// SnapshotCodec turns an aggregate's state S into a [Snapshot] and back.
// Snapshots are a cache: a state whose encoding changed must never be read
// with the new code, so Decode ignores every snapshot written with another
// schema version and the caller replays the stream instead. There are no
// upcasters for snapshots; bump SchemaVersion whenever the encoding of S
// changes incompatibly.
//
// The zero value is ready to use: schema version 1 and the default codec.
// A SnapshotCodec is safe for concurrent use as long as its fields are not
// changed.
type SnapshotCodec[S any] struct {
	// SchemaVersion is the version of the state's encoding that Encode
	// writes and Decode accepts. Zero means 1; below zero is invalid.
	SchemaVersion int
	// Codec encodes the state. Nil means [ProtoCodec] if S implements
	// proto.Message (use the pointer, *pb.State) and [JSONCodec] otherwise.
	Codec Codec
}

// Validate reports every problem with c at once: a negative SchemaVersion
// (ErrBadVersion), a Codec that cannot encode S (ErrCodecMismatch) or an
// interface S (ErrInvalidInput). Encode and Decode call it.
func (c SnapshotCodec[S]) Validate() error {
	var errs []error
	if c.SchemaVersion < 0 {
		errs = append(errs, fmt.Errorf("%w: snapshot schema version %d", ErrBadVersion, c.SchemaVersion))
	}
	if _, err := codecFor(reflect.TypeFor[S](), c.Codec, c.Codec != nil); err != nil {
		errs = append(errs, fmt.Errorf("snapshot codec: %w", err))
	}
	return errors.Join(errs...)
}

// version returns the schema version in effect.
func (c SnapshotCodec[S]) version() int {
	if c.SchemaVersion == 0 {
		return 1
	}
	return c.SchemaVersion
}

// resolve validates c and returns the codec in effect.
func (c SnapshotCodec[S]) resolve() (Codec, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return codecFor(reflect.TypeFor[S](), c.Codec, c.Codec != nil)
}

// Encode encodes state as the snapshot of stream at version, the stream
// version the state reflects. It returns ErrEmptyStreamID, ErrBadVersion for
// a version below 1, ErrInvalidInput for a nil state, Validate's error, or
// the codec's error wrapped.
func (c SnapshotCodec[S]) Encode(stream string, version int64, state S) (Snapshot, error) {
	codec, err := c.resolve()
	if err != nil {
		return Snapshot{}, err
	}
	switch {
	case stream == "":
		return Snapshot{}, fmt.Errorf("%w: snapshot", ErrEmptyStreamID)
	case version < 1:
		return Snapshot{}, fmt.Errorf("%w: snapshot of stream %q at version %d", ErrBadVersion, stream, version)
	case isNilPointer(state):
		return Snapshot{}, fmt.Errorf("%w: nil state for the snapshot of stream %q", ErrInvalidInput, stream)
	}
	data, err := codec.Marshal(state)
	if err != nil {
		return Snapshot{}, fmt.Errorf("persistence: encode snapshot of stream %q at version %d with the %s codec: %w",
			stream, version, codec.Name(), err)
	}
	return Snapshot{StreamID: stream, Version: version, SchemaVersion: c.version(), Data: data}, nil
}

// Decode decodes the state in s. If s was written with another schema
// version than c's, including 0 (unknown), it returns ok == false and no
// error: the caller ignores the snapshot and replays the stream. Data that
// does not decode is an error wrapping the codec's, as is Validate's; the
// caller may then replay too, but should log it, because it is a bug.
func (c SnapshotCodec[S]) Decode(s Snapshot) (state S, ok bool, err error) {
	codec, err := c.resolve()
	if err != nil {
		return state, false, err
	}
	if s.SchemaVersion != c.version() {
		return state, false, nil
	}
	state, err = decodeAs[S](codec, s.Data)
	if err != nil {
		return state, false, fmt.Errorf("persistence: decode snapshot of stream %q at version %d (schema version %d) with the %s codec: %w",
			s.StreamID, s.Version, s.SchemaVersion, codec.Name(), err)
	}
	return state, true, nil
}
