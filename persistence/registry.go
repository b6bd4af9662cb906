package persistence

import (
	"fmt"
	"reflect"
	"sync"
)

// Upcaster turns the encoding of an event at one schema version into the
// encoding at the next. It runs on the goroutine that decodes, possibly on
// several at once, so it must be a pure function of data: no shared state,
// no I/O. It must not modify data, which belongs to the caller, and it must
// return an error, not panic, for bytes it cannot read: stored events can be
// anything.
type Upcaster func(data []byte) ([]byte, error)

// Registry maps event type names, the [EventData] Type, to Go types and their
// codecs, and upcasts events written with old schema versions. Build one
// with [NewRegistry], [Register] and [Registry.Upcast], usually at startup,
// and pass it to whoever encodes or decodes events; there is no default
// registry.
//
// A Registry is safe for concurrent use: registration takes a lock that
// decoding shares, so events can be decoded from many goroutines while
// types are still being registered. The zero value is an empty registry
// ready to use.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*registration
	byType map[reflect.Type]*registration
}

// registration is what Register records for one event type. Only upcasters
// changes after Register, under the Registry's write lock.
type registration struct {
	name    string
	goType  reflect.Type
	version int
	codec   Codec
	// decode returns a fresh value of the registered type.
	decode    func(c Codec, data []byte) (any, error)
	upcasters map[int]Upcaster // by the version they upcast from
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{}
}

// TypeOption configures an event type passed to [Register].
type TypeOption func(*typeOptions)

type typeOptions struct {
	version  int
	codec    Codec
	codecSet bool
}

// WithSchemaVersion sets the current schema version of the event type: the
// version [Registry.Marshal] writes and [Registry.Unmarshal] upcasts to. It
// must be at least 1; the default is 1.
func WithSchemaVersion(v int) TypeOption {
	return func(o *typeOptions) { o.version = v }
}

// WithCodec sets the event type's codec. The default is [ProtoCodec] for
// types that implement proto.Message (register the pointer, *pb.OrderPlaced)
// and [JSONCodec] for the others.
func WithCodec(c Codec) TypeOption {
	return func(o *typeOptions) { o.codec, o.codecSet = c, true }
}

// Register maps eventType to the Go type T in r. Events of type T are then
// encoded by [Registry.Marshal] and decoded by [Registry.Unmarshal] as T:
// for a pointer type such as *pb.OrderPlaced a fresh pointer, for a struct
// a struct value.
//
// A name maps to one Go type and a Go type to one name. Register returns an
// error from the ErrInvalidInput family, and registers nothing, for an empty
// or non-UTF-8 name (ErrEmptyEventType, ErrInvalidText), a name or a type
// already registered (ErrAlreadyRegistered), a codec that cannot encode T
// (ErrCodecMismatch), a schema version below 1 (ErrBadVersion), an interface
// type, or a nil r.
func Register[T any](r *Registry, eventType string, opts ...TypeOption) error {
	if r == nil {
		return fmt.Errorf("%w: nil registry", ErrInvalidInput)
	}
	goType := reflect.TypeFor[T]()
	o := typeOptions{version: 1}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	switch {
	case eventType == "":
		return fmt.Errorf("%w: register %s", ErrEmptyEventType, goType)
	case !validText(eventType):
		return fmt.Errorf("%w: event type %q", ErrInvalidText, eventType)
	case o.version < 1:
		return fmt.Errorf("%w: event type %q: schema version %d, want at least 1", ErrBadVersion, eventType, o.version)
	}
	codec, err := codecFor(goType, o.codec, o.codecSet)
	if err != nil {
		return fmt.Errorf("register event type %q: %w", eventType, err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byName[eventType]; ok {
		return fmt.Errorf("%w: event type %q is registered for %s", ErrAlreadyRegistered, eventType, prev.goType)
	}
	if prev, ok := r.byType[goType]; ok {
		return fmt.Errorf("%w: %s is registered as event type %q", ErrAlreadyRegistered, goType, prev.name)
	}
	reg := &registration{
		name:    eventType,
		goType:  goType,
		version: o.version,
		codec:   codec,
		decode: func(c Codec, data []byte) (any, error) {
			return decodeAs[T](c, data)
		},
	}
	if r.byName == nil {
		r.byName = make(map[string]*registration)
		r.byType = make(map[reflect.Type]*registration)
	}
	r.byName[eventType] = reg
	r.byType[goType] = reg
	return nil
}

// Upcast registers fn to turn the encoding of eventType at schema version
// fromVersion into the encoding at fromVersion+1. [Registry.Unmarshal]
// chains upcasters from an event's version up to the current one, so a type
// at version 3 needs upcasters from 1 and from 2 to read events of version 1.
//
// Register the type first: Upcast returns a *UnknownEventTypeError for an
// unregistered name, ErrBadVersion unless 1 <= fromVersion < the current
// version, ErrAlreadyRegistered for a second upcaster from the same version,
// and ErrInvalidInput for a nil fn.
func (r *Registry) Upcast(eventType string, fromVersion int, fn Upcaster) error {
	if r == nil {
		return fmt.Errorf("%w: nil registry", ErrInvalidInput)
	}
	if fn == nil {
		return fmt.Errorf("%w: nil upcaster for event type %q", ErrInvalidInput, eventType)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.byName[eventType]
	if !ok {
		return fmt.Errorf("upcast: %w", &UnknownEventTypeError{Type: eventType})
	}
	if fromVersion < 1 || fromVersion >= reg.version {
		return fmt.Errorf("%w: upcaster for event type %q from schema version %d; the current version is %d",
			ErrBadVersion, eventType, fromVersion, reg.version)
	}
	if _, dup := reg.upcasters[fromVersion]; dup {
		return fmt.Errorf("%w: upcaster for event type %q from schema version %d", ErrAlreadyRegistered, eventType, fromVersion)
	}
	if reg.upcasters == nil {
		reg.upcasters = make(map[int]Upcaster)
	}
	reg.upcasters[fromVersion] = fn
	return nil
}

// Marshal encodes event, whose Go type must be registered exactly (a
// registered *Msg does not admit Msg, nor the reverse). It sets Type,
// SchemaVersion (the current one) and Data, and leaves ID and Metadata to
// the caller. An unregistered type yields a *UnknownEventTypeError naming the
// Go type; a nil event yields ErrInvalidInput; a codec failure is wrapped.
//
// The event is any because a stream holds events of many types; [Register]
// is the typed edge.
func (r *Registry) Marshal(event any) (EventData, error) {
	if r == nil {
		return EventData{}, fmt.Errorf("%w: nil registry", ErrInvalidInput)
	}
	if isNilPointer(event) {
		return EventData{}, fmt.Errorf("%w: nil event %T", ErrInvalidInput, event)
	}
	goType := reflect.TypeOf(event)
	r.mu.RLock()
	reg, ok := r.byType[goType]
	r.mu.RUnlock()
	if !ok {
		return EventData{}, &UnknownEventTypeError{Type: goType.String()}
	}
	data, err := reg.codec.Marshal(event)
	if err != nil {
		return EventData{}, fmt.Errorf("persistence: encode event type %q with the %s codec: %w", reg.name, reg.codec.Name(), err)
	}
	return EventData{Type: reg.name, SchemaVersion: reg.version, Data: data}, nil
}

// Unmarshal decodes e into a fresh value of the Go type registered for
// e.Type, upcasting it first if e.SchemaVersion is older than the current
// version. A SchemaVersion of 0 (unset) means 1. It never modifies e.Data.
//
// It returns a *UnknownEventTypeError for an unregistered e.Type, a
// *SchemaVersionError if the version is newer than the current one, below 0,
// or lacks an upcaster on the way up, and a wrapped error for an upcaster or
// codec failure, with the type and versions involved. An upcaster that
// panics is reported as an error too.
//
// The result is any because a stream holds events of many types; use
// [Decode] to get a T or a type switch over the registered types.
func (r *Registry) Unmarshal(e EventData) (any, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil registry", ErrInvalidInput)
	}
	version := e.SchemaVersion
	if version == 0 {
		version = 1
	}
	// Copy what decoding needs, so codecs and upcasters run unlocked: a slow
	// upcaster does not hold up registration, and one that calls back into
	// the Registry cannot deadlock.
	r.mu.RLock()
	reg, ok := r.byName[e.Type]
	var chain []Upcaster
	var verr *SchemaVersionError
	if ok {
		chain, verr = reg.chain(version)
	}
	r.mu.RUnlock()
	if !ok {
		return nil, &UnknownEventTypeError{Type: e.Type}
	}
	if verr != nil {
		return nil, verr
	}

	data := e.Data
	for i, fn := range chain {
		from := version + i
		next, err := runUpcaster(fn, data)
		if err != nil {
			return nil, fmt.Errorf("%w: upcast event type %q from schema version %d to %d: %w", ErrCorrupt, e.Type, from, from+1, err)
		}
		data = next
	}
	v, err := reg.decode(reg.codec, data)
	if err != nil {
		return nil, fmt.Errorf("%w: decode event type %q at schema version %d with the %s codec: %w",
			ErrCorrupt, e.Type, reg.version, reg.codec.Name(), err)
	}
	return v, nil
}

// chain returns the upcasters from version to the current version, or why
// there is none. Call it with the Registry's lock held.
func (reg *registration) chain(version int) ([]Upcaster, *SchemaVersionError) {
	if version < 1 || version > reg.version {
		return nil, &SchemaVersionError{Type: reg.name, Version: version, Current: reg.version}
	}
	if version == reg.version {
		return nil, nil
	}
	chain := make([]Upcaster, 0, reg.version-version)
	for v := version; v < reg.version; v++ {
		fn, ok := reg.upcasters[v]
		if !ok {
			return nil, &SchemaVersionError{Type: reg.name, Version: version, Current: reg.version, MissingUpcaster: v}
		}
		chain = append(chain, fn)
	}
	return chain, nil
}

// runUpcaster calls fn, turning a panic into an error: stored bytes can be
// anything, and one bad event must not crash a consumer that decodes it.
func runUpcaster(fn Upcaster, data []byte) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("upcaster panicked: %v", p)
		}
	}()
	return fn(data)
}

// Decode is [Registry.Unmarshal] for callers that know which Go type to
// expect. T may also be an interface the registered type implements, such
// as proto.Message. An event of another type yields ErrTypeMismatch; errors
// from Unmarshal are returned as they are.
func Decode[T any](r *Registry, e EventData) (T, error) {
	var zero T
	v, err := r.Unmarshal(e)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("%w: event type %q decodes to %T, not %s", ErrTypeMismatch, e.Type, v, reflect.TypeFor[T]())
	}
	return t, nil
}
