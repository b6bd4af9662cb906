package persistence_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/composable-go/composable/persistence"
)

// orderPlaced is at schema version 3. Version 1 called CustomerID
// "customer"; version 2 renamed it; version 3 added Currency, "EUR" for
// older events.
type orderPlaced struct {
	CustomerID string `json:"customer_id"`
	Total      int    `json:"total"`
	Currency   string `json:"currency"`
}

// orderShipped is at version 2 with no upcaster from 1.
type orderShipped struct {
	OrderID string `json:"order_id"`
}

// orderCancelled has an upcaster that fails on "fail" and panics on "panic".
type orderCancelled struct {
	Reason string `json:"reason"`
}

// brokenEvent uses failingCodec.
type brokenEvent struct{}

type unregistered struct{}

var (
	errCodec   = errors.New("codec failure")
	errUpcast  = errors.New("upcast failure")
	errNotJSON = errors.New("not a JSON object")
)

// failingCodec fails every call with errCodec.
type failingCodec struct{}

func (failingCodec) Name() string                { return "failing" }
func (failingCodec) Marshal(any) ([]byte, error) { return nil, errCodec }
func (failingCodec) Unmarshal([]byte, any) error { return errCodec }

// editJSONObject applies edit to the JSON object in data; it is how the
// upcasters below change field names and defaults.
func editJSONObject(data []byte, edit func(m map[string]json.RawMessage)) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil { // the JSON was null
		return nil, errNotJSON
	}
	edit(m)
	return json.Marshal(m)
}

// renameCustomer upcasts orderPlaced from version 1 to 2.
func renameCustomer(data []byte) ([]byte, error) {
	return editJSONObject(data, func(m map[string]json.RawMessage) {
		if c, ok := m["customer"]; ok {
			m["customer_id"] = c
			delete(m, "customer")
		}
	})
}

// addCurrency upcasts orderPlaced from version 2 to 3.
func addCurrency(data []byte) ([]byte, error) {
	return editJSONObject(data, func(m map[string]json.RawMessage) {
		if _, ok := m["currency"]; !ok {
			m["currency"] = json.RawMessage(`"EUR"`)
		}
	})
}

// newTestRegistry registers every event type the tests use.
func newTestRegistry(t testing.TB) *persistence.Registry {
	t.Helper()
	r := persistence.NewRegistry()
	for _, err := range []error{
		persistence.Register[*wrapperspb.StringValue](r, "greeting"),
		persistence.Register[*wrapperspb.BoolValue](r, "flag", persistence.WithCodec(persistence.JSONCodec{})),
		persistence.Register[orderPlaced](r, "order.placed", persistence.WithSchemaVersion(3)),
		r.Upcast("order.placed", 1, renameCustomer),
		r.Upcast("order.placed", 2, addCurrency),
		persistence.Register[orderShipped](r, "order.shipped", persistence.WithSchemaVersion(2)),
		persistence.Register[orderCancelled](r, "order.cancelled", persistence.WithSchemaVersion(2)),
		r.Upcast("order.cancelled", 1, func(data []byte) ([]byte, error) {
			switch string(data) {
			case "fail":
				return nil, errUpcast
			case "panic":
				panic("upcaster bug")
			}
			return data, nil
		}),
		persistence.Register[brokenEvent](r, "broken", persistence.WithCodec(failingCodec{})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// checkErr fails unless err matches every target in want, or is nil when
// want is empty.
func checkErr(t *testing.T, err error, want ...error) {
	t.Helper()
	if (err == nil) != (len(want) == 0) {
		t.Fatalf("error %v, want %v", err, want)
	}
	matchAll(t, err, want...)
}

// checkAs fails unless err has a *SchemaVersionError or an
// *UnknownEventTypeError in its chain equal to want, if want is one. want is
// not an error to match but the value expected, hence any.
func checkAs(t *testing.T, err error, want any) {
	t.Helper()
	var version *persistence.SchemaVersionError
	var unknown *persistence.UnknownEventTypeError
	switch want := want.(type) {
	case *persistence.SchemaVersionError:
		if !errors.As(err, &version) || *version != *want {
			t.Errorf("error %v, want %#v", err, want)
		}
	case *persistence.UnknownEventTypeError:
		if !errors.As(err, &unknown) || *unknown != *want {
			t.Errorf("error %v, want %#v", err, want)
		}
	}
}

// matchAll fails unless err matches every target in want.
func matchAll(t *testing.T, err error, want ...error) {
	t.Helper()
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("error %q does not match %q", err, w)
		}
	}
}

func TestRegisterRefuses(t *testing.T) {
	r := newTestRegistry(t)
	reg := func(name string, opts ...persistence.TypeOption) func() error {
		return func() error { return persistence.Register[unregistered](r, name, opts...) }
	}
	tests := []struct {
		name     string
		register func() error
		want     []error
	}{
		{"empty name", reg(""), []error{persistence.ErrEmptyEventType, persistence.ErrInvalidInput}},
		{"invalid UTF-8 name", reg("bad\xff"), []error{persistence.ErrInvalidText, persistence.ErrInvalidInput}},
		{"NUL in name", reg("bad\x00"), []error{persistence.ErrInvalidText}},
		{"name taken", reg("order.placed"), []error{persistence.ErrAlreadyRegistered, persistence.ErrInvalidInput}},
		{"type taken under another name", func() error { return persistence.Register[orderPlaced](r, "order.placed.again") },
			[]error{persistence.ErrAlreadyRegistered}},
		{"proto codec for a struct", reg("x", persistence.WithCodec(persistence.ProtoCodec{})),
			[]error{persistence.ErrCodecMismatch, persistence.ErrInvalidInput}},
		{"pointer to proto codec for a struct", reg("x", persistence.WithCodec(&persistence.ProtoCodec{})),
			[]error{persistence.ErrCodecMismatch}},
		{"proto message by value", func() error { return persistence.Register[wrapperspb.Int64Value](r, "x") },
			[]error{persistence.ErrCodecMismatch}},
		{"nil codec", reg("x", persistence.WithCodec(nil)), []error{persistence.ErrInvalidInput}},
		{"schema version 0", reg("x", persistence.WithSchemaVersion(0)), []error{persistence.ErrBadVersion, persistence.ErrInvalidInput}},
		{"negative schema version", reg("x", persistence.WithSchemaVersion(-1)), []error{persistence.ErrBadVersion}},
		{"interface type", func() error { return persistence.Register[proto.Message](r, "x") }, []error{persistence.ErrInvalidInput}},
		{"nil registry", func() error { return persistence.Register[unregistered](nil, "x") }, []error{persistence.ErrInvalidInput}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.register(), tt.want...)
		})
	}
	// A refused registration registers nothing.
	if _, err := r.Marshal(unregistered{}); !errors.Is(err, persistence.ErrUnknownEventType) {
		t.Errorf("Marshal(unregistered{}) = %v, want ErrUnknownEventType", err)
	}
	if _, err := r.Unmarshal(persistence.EventData{Type: "x"}); !errors.Is(err, persistence.ErrUnknownEventType) {
		t.Errorf(`Unmarshal(Type "x") = %v, want ErrUnknownEventType`, err)
	}
}

func TestZeroRegistry(t *testing.T) {
	var r persistence.Registry
	checkErr(t, persistence.Register[orderShipped](&r, "order.shipped"))
	e, err := r.Marshal(orderShipped{OrderID: "o-1"})
	checkErr(t, err)
	got, err := persistence.Decode[orderShipped](&r, e)
	checkErr(t, err)
	if got.OrderID != "o-1" {
		t.Errorf("got %+v", got)
	}
}

func TestUpcastRefuses(t *testing.T) {
	r := newTestRegistry(t)
	same := func(data []byte) ([]byte, error) { return data, nil }
	tests := []struct {
		name      string
		registry  *persistence.Registry
		eventType string
		from      int
		fn        persistence.Upcaster
		want      []error
	}{
		{"unknown type", r, "nope", 1, same, []error{persistence.ErrUnknownEventType}},
		{"from version 0", r, "order.placed", 0, same, []error{persistence.ErrBadVersion, persistence.ErrInvalidInput}},
		{"from the current version", r, "order.placed", 3, same, []error{persistence.ErrBadVersion}},
		{"type at version 1", r, "greeting", 1, same, []error{persistence.ErrBadVersion}},
		{"already registered", r, "order.placed", 1, same, []error{persistence.ErrAlreadyRegistered}},
		{"nil upcaster", r, "order.shipped", 1, nil, []error{persistence.ErrInvalidInput}},
		{"nil registry", nil, "order.shipped", 1, same, []error{persistence.ErrInvalidInput}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.registry.Upcast(tt.eventType, tt.from, tt.fn), tt.want...)
		})
	}
	checkAs(t, r.Upcast("nope", 1, same), &persistence.UnknownEventTypeError{Type: "nope"})
}

func TestMarshal(t *testing.T) {
	r := newTestRegistry(t)
	greeting, err := proto.MarshalOptions{Deterministic: true}.Marshal(wrapperspb.String("hi"))
	checkErr(t, err)
	tests := []struct {
		name     string
		registry *persistence.Registry
		event    any
		want     persistence.EventData
		wantErr  []error
		wantAs   error
	}{
		{name: "proto by default", registry: r, event: wrapperspb.String("hi"),
			want: persistence.EventData{Type: "greeting", SchemaVersion: 1, Data: greeting}},
		{name: "JSON by default at the current version", registry: r,
			event: orderPlaced{CustomerID: "ann", Total: 100, Currency: "USD"},
			want: persistence.EventData{Type: "order.placed", SchemaVersion: 3,
				Data: []byte(`{"customer_id":"ann","total":100,"currency":"USD"}`)}},
		{name: "JSON codec for a proto type", registry: r, event: wrapperspb.Bool(true),
			want: persistence.EventData{Type: "flag", SchemaVersion: 1, Data: []byte(`{"value":true}`)}},
		{name: "unregistered type", registry: r, event: unregistered{},
			wantErr: []error{persistence.ErrUnknownEventType},
			wantAs:  &persistence.UnknownEventTypeError{Type: "persistence_test.unregistered"}},
		{name: "pointer to a registered struct type", registry: r, event: &orderShipped{},
			wantErr: []error{persistence.ErrUnknownEventType},
			wantAs:  &persistence.UnknownEventTypeError{Type: "*persistence_test.orderShipped"}},
		{name: "nil", registry: r, event: nil, wantErr: []error{persistence.ErrInvalidInput}},
		{name: "nil pointer", registry: r, event: (*wrapperspb.StringValue)(nil), wantErr: []error{persistence.ErrInvalidInput}},
		{name: "codec failure", registry: r, event: brokenEvent{}, wantErr: []error{errCodec}},
		{name: "nil registry", registry: nil, event: orderShipped{}, wantErr: []error{persistence.ErrInvalidInput}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.registry.Marshal(tt.event)
			checkErr(t, err, tt.wantErr...)
			checkAs(t, err, tt.wantAs)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("EventData (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshal(t *testing.T) {
	r := newTestRegistry(t)
	greeting, err := r.Marshal(wrapperspb.String("hi"))
	checkErr(t, err)
	unversioned := greeting
	unversioned.SchemaVersion = 0
	ann := orderPlaced{CustomerID: "ann", Total: 100, Currency: "EUR"}
	event := func(typ string, version int, data string) persistence.EventData {
		return persistence.EventData{ID: "e-1", Type: typ, SchemaVersion: version, Data: []byte(data)}
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	isSyntaxErr := func(err error) bool { return errors.As(err, &syntaxErr) }
	tests := []struct {
		name    string
		event   persistence.EventData
		want    any
		wantErr []error
		// check makes further assertions on a failure, like errors.As.
		check func(err error) bool
		// wantAs is the *SchemaVersionError or *UnknownEventTypeError wanted.
		wantAs error
		// wantMsg are parts of the error message: type names and versions.
		wantMsg []string
	}{
		{name: "proto", event: greeting, want: wrapperspb.String("hi")},
		{name: "schema version 0 means 1", event: unversioned, want: wrapperspb.String("hi")},
		{name: "JSON codec for a proto type", event: event("flag", 1, `{"value":true}`), want: wrapperspb.Bool(true)},
		{name: "JSON at the current version", event: event("order.placed", 3, `{"customer_id":"ann","total":100,"currency":"USD"}`),
			want: orderPlaced{CustomerID: "ann", Total: 100, Currency: "USD"}},
		{name: "upcast from 2", event: event("order.placed", 2, `{"customer_id":"ann","total":100}`), want: ann},
		{name: "upcast from 1", event: event("order.placed", 1, `{"customer":"ann","total":100}`), want: ann},
		{name: "upcast from 0, meaning 1", event: event("order.placed", 0, `{"customer":"ann","total":100}`), want: ann},
		{name: "unknown type", event: event("nope", 1, `{}`), wantErr: []error{persistence.ErrUnknownEventType},
			wantAs: &persistence.UnknownEventTypeError{Type: "nope"}},
		{name: "newer version", event: event("order.placed", 4, `{}`), wantErr: []error{persistence.ErrSchemaVersion},
			wantAs:  &persistence.SchemaVersionError{Type: "order.placed", Version: 4, Current: 3},
			wantMsg: []string{`"order.placed"`, "4", "newer", "3"}},
		{name: "negative version", event: event("greeting", -1, ""), wantErr: []error{persistence.ErrSchemaVersion},
			wantAs: &persistence.SchemaVersionError{Type: "greeting", Version: -1, Current: 1}},
		{name: "missing upcaster", event: event("order.shipped", 1, `{"order_id":"o-1"}`), wantErr: []error{persistence.ErrSchemaVersion},
			wantAs:  &persistence.SchemaVersionError{Type: "order.shipped", Version: 1, Current: 2, MissingUpcaster: 1},
			wantMsg: []string{`"order.shipped"`, "no upcaster from schema version 1 to 2"}},
		{name: "corrupt proto", event: event("greeting", 1, "\xff"), wantErr: []error{proto.Error},
			wantMsg: []string{`"greeting"`, "proto"}},
		{name: "proto string with invalid UTF-8", event: event("greeting", 1, "\x0a\x01\xff"), wantErr: []error{proto.Error}},
		{name: "corrupt JSON", event: event("order.placed", 3, `{"customer_id":`), check: isSyntaxErr,
			wantMsg: []string{`"order.placed"`, "json"}},
		{name: "JSON of the wrong shape", event: event("order.placed", 3, `{"total":"lots"}`),
			check: func(err error) bool { return errors.As(err, &typeErr) }},
		{name: "corrupt JSON fails the upcaster", event: event("order.placed", 1, `not json`), check: isSyntaxErr,
			wantMsg: []string{`"order.placed"`, "from schema version 1 to 2"}},
		{name: "JSON null fails the second upcaster", event: event("order.placed", 2, `null`), wantErr: []error{errNotJSON},
			wantMsg: []string{"from schema version 2 to 3"}},
		{name: "upcaster error", event: event("order.cancelled", 1, "fail"), wantErr: []error{errUpcast},
			wantMsg: []string{`"order.cancelled"`, "from schema version 1 to 2"}},
		{name: "upcaster panic", event: event("order.cancelled", 1, "panic"),
			wantMsg: []string{`"order.cancelled"`, "panicked", "upcaster bug"}},
		{name: "codec failure", event: event("broken", 1, "{}"), wantErr: []error{errCodec}, wantMsg: []string{"failing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Clone(tt.event.Data)
			got, err := r.Unmarshal(tt.event)
			if !bytes.Equal(data, tt.event.Data) {
				t.Errorf("Unmarshal changed the event's data from %q to %q", data, tt.event.Data)
			}
			if tt.want != nil {
				checkErr(t, err)
				if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
					t.Errorf("event (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %v and no error", got)
			}
			if got != nil {
				t.Errorf("got %v with the error, want nil", got)
			}
			matchAll(t, err, tt.wantErr...)
			if tt.check != nil && !tt.check(err) {
				t.Errorf("error %v (%T) fails the check", err, err)
			}
			checkAs(t, err, tt.wantAs)
			for _, part := range tt.wantMsg {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not mention %q", err, part)
				}
			}
		})
	}
}

func TestUnmarshalReturnsFreshValues(t *testing.T) {
	r := newTestRegistry(t)
	e, err := r.Marshal(wrapperspb.String("hi"))
	checkErr(t, err)
	a, err := persistence.Decode[*wrapperspb.StringValue](r, e)
	checkErr(t, err)
	b, err := persistence.Decode[*wrapperspb.StringValue](r, e)
	checkErr(t, err)
	if a == b {
		t.Fatal("two decodes returned the same message")
	}
	a.Value = "changed"
	if b.GetValue() != "hi" {
		t.Errorf("changing one decoded message changed the other: %q", b.GetValue())
	}
}

func TestUpcasterRegisteredLater(t *testing.T) {
	r := newTestRegistry(t)
	e := persistence.EventData{Type: "order.shipped", SchemaVersion: 1, Data: []byte(`{"id":"o-1"}`)}
	if _, err := r.Unmarshal(e); !errors.Is(err, persistence.ErrSchemaVersion) {
		t.Fatalf("before Upcast: %v, want ErrSchemaVersion", err)
	}
	checkErr(t, r.Upcast("order.shipped", 1, func(data []byte) ([]byte, error) {
		return bytes.Replace(data, []byte(`"id"`), []byte(`"order_id"`), 1), nil
	}))
	got, err := persistence.Decode[orderShipped](r, e)
	checkErr(t, err)
	if got.OrderID != "o-1" {
		t.Errorf("got %+v, want order o-1", got)
	}
}

func TestDecode(t *testing.T) {
	r := newTestRegistry(t)
	greeting, err := r.Marshal(wrapperspb.String("hi"))
	checkErr(t, err)
	placed, err := r.Marshal(orderPlaced{CustomerID: "ann"})
	checkErr(t, err)
	tests := []struct {
		name    string
		decode  func() (any, error)
		want    any
		wantErr []error
	}{
		{"struct", func() (any, error) { return persistence.Decode[orderPlaced](r, placed) }, orderPlaced{CustomerID: "ann"}, nil},
		{"proto pointer", func() (any, error) { return persistence.Decode[*wrapperspb.StringValue](r, greeting) },
			wrapperspb.String("hi"), nil},
		{"interface", func() (any, error) { return persistence.Decode[proto.Message](r, greeting) },
			wrapperspb.String("hi"), nil},
		{"type mismatch", func() (any, error) { return persistence.Decode[*wrapperspb.StringValue](r, placed) },
			(*wrapperspb.StringValue)(nil), []error{persistence.ErrTypeMismatch, persistence.ErrInvalidInput}},
		{"pointer to a registered struct type", func() (any, error) { return persistence.Decode[*orderPlaced](r, placed) },
			(*orderPlaced)(nil), []error{persistence.ErrTypeMismatch}},
		{"unknown type", func() (any, error) {
			return persistence.Decode[orderPlaced](r, persistence.EventData{Type: "nope"})
		}, orderPlaced{}, []error{persistence.ErrUnknownEventType}},
		{"nil registry", func() (any, error) { return persistence.Decode[orderPlaced](nil, placed) },
			orderPlaced{}, []error{persistence.ErrInvalidInput}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.decode()
			checkErr(t, err, tt.wantErr...)
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConcurrentUse decodes and encodes from many goroutines while another
// one registers types and an upcaster; run it with -race.
func TestConcurrentUse(t *testing.T) {
	r := newTestRegistry(t)
	v1 := persistence.EventData{Type: "order.placed", SchemaVersion: 1, Data: []byte(`{"customer":"ann","total":1}`)}
	want := orderPlaced{CustomerID: "ann", Total: 1, Currency: "EUR"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				got, err := persistence.Decode[orderPlaced](r, v1)
				if err != nil || got != want {
					t.Errorf("goroutine %d, decode %d: %+v, %v", g, i, got, err)
					return
				}
				e, err := r.Marshal(wrapperspb.String(fmt.Sprint(i)))
				if err != nil {
					t.Errorf("goroutine %d, marshal %d: %v", g, i, err)
					return
				}
				if msg, err := persistence.Decode[*wrapperspb.StringValue](r, e); err != nil || msg.GetValue() != fmt.Sprint(i) {
					t.Errorf("goroutine %d, proto decode %d: %v, %v", g, i, msg, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if err := persistence.Register[*wrapperspb.Int32Value](r, fmt.Sprint("late.", i)); (err == nil) != (i == 0) {
				t.Errorf("registration %d of the same type: %v", i, err)
			}
		}
		if err := r.Upcast("order.shipped", 1, func(d []byte) ([]byte, error) { return d, nil }); err != nil {
			t.Errorf("Upcast: %v", err)
		}
	})
	wg.Wait()
}
