package persistence_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/composable-go/composable/persistence"
)

// cartState is a JSON-encoded aggregate state.
type cartState struct {
	Items []string `json:"items"`
	Total int      `json:"total"`
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// roundTrip encodes state at stream "cart-1", version 7, decodes it again
// and checks both steps.
func roundTrip[S any](t *testing.T, c persistence.SnapshotCodec[S], state S, wantSchema int) {
	t.Helper()
	s, err := c.Encode("cart-1", 7, state)
	checkErr(t, err)
	if s.StreamID != "cart-1" || s.Version != 7 || s.SchemaVersion != wantSchema || len(s.Data) == 0 {
		t.Errorf("Encode = %+v, want stream cart-1 at version 7, schema version %d, with data", s, wantSchema)
	}
	got, ok, err := c.Decode(s)
	checkErr(t, err)
	if !ok {
		t.Fatal("Decode ignored the snapshot it encoded")
	}
	if diff := cmp.Diff(state, got, protocmp.Transform()); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

func TestSnapshotCodecRoundTrip(t *testing.T) {
	cart := mustStruct(t, map[string]any{"items": []any{"apple", "pear"}, "total": 3.5})
	t.Run("proto by default", func(t *testing.T) {
		var c persistence.SnapshotCodec[*structpb.Struct]
		roundTrip(t, c, cart, 1)
		s, err := c.Encode("cart-1", 7, cart)
		checkErr(t, err)
		var fresh structpb.Struct
		if err := proto.Unmarshal(s.Data, &fresh); err != nil {
			t.Errorf("the default codec for a proto state is not protobuf: %v", err)
		}
	})
	t.Run("JSON by default", func(t *testing.T) {
		c := persistence.SnapshotCodec[cartState]{SchemaVersion: 4}
		roundTrip(t, c, cartState{Items: []string{"apple"}, Total: 2}, 4)
		s, err := c.Encode("cart-1", 7, cartState{Total: 2})
		checkErr(t, err)
		if !json.Valid(s.Data) {
			t.Errorf("the default codec for a struct state is not JSON: %q", s.Data)
		}
	})
	t.Run("explicit JSON codec for a proto state", func(t *testing.T) {
		c := persistence.SnapshotCodec[*wrapperspb.Int64Value]{Codec: persistence.JSONCodec{}}
		roundTrip(t, c, wrapperspb.Int64(42), 1)
	})
	t.Run("pointer to a struct state", func(t *testing.T) {
		roundTrip(t, persistence.SnapshotCodec[*cartState]{}, &cartState{Total: 1}, 1)
	})
}

func TestSnapshotCodecIgnoresOtherSchemaVersions(t *testing.T) {
	c := persistence.SnapshotCodec[cartState]{SchemaVersion: 2}
	for _, version := range []int{0, 1, 3, -1} {
		t.Run(fmt.Sprint("schema version ", version), func(t *testing.T) {
			// Even data that would decode, or would not, is not looked at.
			for _, data := range []string{`{"items":["apple"],"total":1}`, `corrupt`} {
				got, ok, err := c.Decode(persistence.Snapshot{StreamID: "cart-1", Version: 3, SchemaVersion: version, Data: []byte(data)})
				if err != nil || ok || got.Total != 0 || got.Items != nil {
					t.Errorf("Decode(%s) = %+v, %v, %v; want the zero state, false, nil", data, got, ok, err)
				}
			}
		})
	}
	t.Run("zero codec version means 1, zero snapshot version does not", func(t *testing.T) {
		var c persistence.SnapshotCodec[cartState]
		if _, ok, err := c.Decode(persistence.Snapshot{StreamID: "cart-1", Version: 1, Data: []byte(`{}`)}); ok || err != nil {
			t.Errorf("Decode of schema version 0 = %v, %v; want false, nil", ok, err)
		}
		if _, ok, err := c.Decode(persistence.Snapshot{StreamID: "cart-1", Version: 1, SchemaVersion: 1, Data: []byte(`{}`)}); !ok || err != nil {
			t.Errorf("Decode of schema version 1 = %v, %v; want true, nil", ok, err)
		}
	})
}

func TestSnapshotCodecRefuses(t *testing.T) {
	valid := persistence.Snapshot{StreamID: "cart-1", Version: 1, SchemaVersion: 1, Data: []byte(`{}`)}
	var syntaxErr *json.SyntaxError
	tests := []struct {
		name    string
		run     func() error
		wantErr []error
		check   func(err error) bool
	}{
		{"empty stream", func() error {
			_, err := persistence.SnapshotCodec[cartState]{}.Encode("", 1, cartState{})
			return err
		}, []error{persistence.ErrEmptyStreamID, persistence.ErrInvalidInput}, nil},
		{"stream version 0", func() error {
			_, err := persistence.SnapshotCodec[cartState]{}.Encode("cart-1", 0, cartState{})
			return err
		}, []error{persistence.ErrBadVersion}, nil},
		{"nil state", func() error {
			_, err := persistence.SnapshotCodec[*structpb.Struct]{}.Encode("cart-1", 1, nil)
			return err
		}, []error{persistence.ErrInvalidInput}, nil},
		{"encode with a proto codec for a struct", func() error {
			_, err := persistence.SnapshotCodec[cartState]{Codec: persistence.ProtoCodec{}}.Encode("cart-1", 1, cartState{})
			return err
		}, []error{persistence.ErrCodecMismatch}, nil},
		{"decode with a proto codec for a struct", func() error {
			_, _, err := persistence.SnapshotCodec[cartState]{Codec: persistence.ProtoCodec{}}.Decode(valid)
			return err
		}, []error{persistence.ErrCodecMismatch}, nil},
		{"negative schema version", func() error {
			_, _, err := persistence.SnapshotCodec[cartState]{SchemaVersion: -1}.Decode(valid)
			return err
		}, []error{persistence.ErrBadVersion}, nil},
		{"every problem at once", func() error {
			return persistence.SnapshotCodec[cartState]{SchemaVersion: -1, Codec: persistence.ProtoCodec{}}.Validate()
		}, []error{persistence.ErrBadVersion, persistence.ErrCodecMismatch}, nil},
		{"proto message by value", func() error {
			return persistence.SnapshotCodec[structpb.Struct]{}.Validate()
		}, []error{persistence.ErrCodecMismatch}, nil},
		{"interface state", func() error {
			return persistence.SnapshotCodec[any]{}.Validate()
		}, []error{persistence.ErrInvalidInput}, nil},
		{"encode failure", func() error {
			_, err := persistence.SnapshotCodec[cartState]{Codec: failingCodec{}}.Encode("cart-1", 1, cartState{})
			return err
		}, []error{errCodec}, nil},
		{"corrupt proto", func() error {
			s := valid
			s.Data = []byte{0xff}
			_, ok, err := persistence.SnapshotCodec[*structpb.Struct]{}.Decode(s)
			if ok {
				return errors.New("ok with an error")
			}
			return err
		}, []error{proto.Error}, nil},
		{"corrupt JSON", func() error {
			s := valid
			s.Data = []byte(`{"total":`)
			_, ok, err := persistence.SnapshotCodec[cartState]{}.Decode(s)
			if ok {
				return errors.New("ok with an error")
			}
			return err
		}, nil, func(err error) bool { return errors.As(err, &syntaxErr) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatal("got no error")
			}
			matchAll(t, err, tt.wantErr...)
			if tt.check != nil && !tt.check(err) {
				t.Errorf("error %v (%T) fails the check", err, err)
			}
		})
	}
	if err := (persistence.SnapshotCodec[cartState]{}).Validate(); err != nil {
		t.Errorf("the zero SnapshotCodec is invalid: %v", err)
	}
}

func ExampleSnapshotCodec() {
	type Cart struct {
		Items []string `json:"items"`
	}
	codec := persistence.SnapshotCodec[Cart]{SchemaVersion: 2}
	s, err := codec.Encode("cart-1", 12, Cart{Items: []string{"apple"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s@%d schema v%d: %s\n", s.StreamID, s.Version, s.SchemaVersion, s.Data)

	// A snapshot written by an older release is ignored, not mis-decoded:
	// the caller replays the stream instead.
	s.SchemaVersion = 1
	_, ok, err := codec.Decode(s)
	fmt.Println(ok, err)
	// Output:
	// cart-1@12 schema v2: {"items":["apple"]}
	// false <nil>
}
