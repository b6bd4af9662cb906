package persistence

import (
	"encoding/json"
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"
)

// Codec turns events and snapshot states into bytes and back. A [Registry]
// and a [SnapshotCodec] hand it values of the Go type registered with it,
// and for Unmarshal a pointer to a fresh value to fill (for a pointer type
// such as *pb.OrderPlaced, the fresh pointer itself). Implementations must
// be safe for concurrent use and must not keep data or v after returning.
type Codec interface {
	// Name identifies the encoding in error messages, e.g. "proto".
	Name() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, which points to a fresh value.
	Unmarshal(data []byte, v any) error
}

// ProtoCodec encodes protobuf messages (values implementing proto.Message,
// such as *pb.OrderPlaced) in the binary wire format. It marshals
// deterministically, so the same message always yields the same bytes,
// which golden replay tests rely on. It is the default for types that
// implement proto.Message. The zero value is ready to use and safe for
// concurrent use.
type ProtoCodec struct{}

// Name returns "proto".
func (ProtoCodec) Name() string { return "proto" }

// Marshal encodes v, which must be a proto.Message.
func (ProtoCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%w: proto codec: %T is not a proto.Message", ErrCodecMismatch, v)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Unmarshal decodes data into v, which must be a non-nil proto.Message.
func (ProtoCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%w: proto codec: %T is not a proto.Message", ErrCodecMismatch, v)
	}
	if !m.ProtoReflect().IsValid() {
		return fmt.Errorf("%w: proto codec: nil %T", ErrInvalidInput, v)
	}
	return proto.Unmarshal(data, m)
}

// check refuses, at registration, the types Marshal would refuse later.
func (ProtoCodec) check(t reflect.Type) error {
	if !t.Implements(protoMessageType) {
		return fmt.Errorf("%w: proto codec: %s is not a proto.Message", ErrCodecMismatch, t)
	}
	return nil
}

// JSONCodec encodes values with encoding/json; it suits plain structs with
// exported fields. Unknown fields are ignored when decoding, so adding a
// field needs no new schema version. It is the default for types that do not
// implement proto.Message. The zero value is ready to use and safe for
// concurrent use.
type JSONCodec struct{}

// Name returns "json".
func (JSONCodec) Name() string { return "json" }

// Marshal encodes v with json.Marshal.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data into v with json.Unmarshal.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

var protoMessageType = reflect.TypeFor[proto.Message]()

// typeChecker is implemented by codecs that know, from the Go type alone,
// that they cannot encode it; registering such a type then fails early.
type typeChecker interface {
	check(t reflect.Type) error
}

// codecFor validates the codec chosen for t, or picks the default: proto for
// protobuf messages, JSON for everything else.
func codecFor(t reflect.Type, c Codec, set bool) (Codec, error) {
	switch {
	case t.Kind() == reflect.Interface:
		return nil, fmt.Errorf("%w: %s is an interface type; use a concrete type", ErrInvalidInput, t)
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(protoMessageType):
		// Protobuf messages must not be copied, and only the pointer is a
		// proto.Message: encoding the struct as JSON would be a silent trap.
		return nil, fmt.Errorf("%w: %s is a protobuf message; use *%s", ErrCodecMismatch, t, t)
	case set && c == nil:
		return nil, fmt.Errorf("%w: nil codec", ErrInvalidInput)
	case !set && t.Implements(protoMessageType):
		return ProtoCodec{}, nil
	case !set:
		return JSONCodec{}, nil
	}
	if tc, ok := c.(typeChecker); ok {
		if err := tc.check(t); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// decodeAs decodes data into a fresh T. For a pointer type it allocates the
// value pointed to, so a decoded proto message is never nil and two decodes
// never share memory.
func decodeAs[T any](c Codec, data []byte) (T, error) {
	var v T
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Pointer {
		// Convert keeps named pointer types (type P *S) assignable to T.
		v = reflect.New(t.Elem()).Convert(t).Interface().(T)
		if err := c.Unmarshal(data, v); err != nil {
			var zero T
			return zero, err
		}
		return v, nil
	}
	if err := c.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// isNilPointer reports whether v is nil or a nil pointer. An event or a
// state is never nil: a codec would encode nothing (proto) or null (JSON),
// and decoding would yield a zero value instead of nil.
func isNilPointer(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
