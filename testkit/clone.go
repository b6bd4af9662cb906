package testkit

import (
	"reflect"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
)

// deepCopy returns a copy of v that shares no mutable memory with it:
// pointers, slices and maps are copied recursively (cycles preserved),
// unexported fields included. Protobuf messages are copied with proto.Clone
// and time.Time as a value. Channels and functions are shared: they have no
// state a reducer could change in place.
func deepCopy[T any](v T) T {
	src := reflect.ValueOf(&v).Elem()
	dst := reflect.New(src.Type()).Elem()
	c := copier{seen: make(map[seenKey]reflect.Value)}
	c.copy(dst, src)
	return dst.Interface().(T)
}

type seenKey struct {
	typ reflect.Type
	ptr uintptr
}

type copier struct{ seen map[seenKey]reflect.Value }

var (
	timeType    = reflect.TypeFor[time.Time]()
	messageType = reflect.TypeFor[proto.Message]()
)

// copy sets dst, which is addressable and settable, to a deep copy of src,
// which is addressable.
func (c copier) copy(dst, src reflect.Value) {
	t := src.Type()
	if t == timeType {
		dst.Set(src)
		return
	}
	if t.Implements(messageType) && t.Kind() == reflect.Pointer {
		if !src.IsNil() {
			dst.Set(reflect.ValueOf(proto.Clone(src.Interface().(proto.Message))))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		key := seenKey{t, src.Pointer()}
		if p, ok := c.seen[key]; ok {
			dst.Set(p)
			return
		}
		p := reflect.New(t.Elem())
		c.seen[key] = p
		c.copy(p.Elem(), settable(src.Elem()))
		dst.Set(p)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		key := seenKey{t, src.Pointer()}
		if s, ok := c.seen[key]; ok && s.Len() == src.Len() {
			dst.Set(s)
			return
		}
		s := reflect.MakeSlice(t, src.Len(), src.Cap())
		c.seen[key] = s
		for i := range src.Len() {
			c.copy(s.Index(i), settable(src.Index(i)))
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			c.copy(settable(dst.Index(i)), settable(src.Index(i)))
		}
	case reflect.Map:
		if src.IsNil() {
			return
		}
		key := seenKey{t, src.Pointer()}
		if m, ok := c.seen[key]; ok {
			dst.Set(m)
			return
		}
		m := reflect.MakeMapWithSize(t, src.Len())
		c.seen[key] = m
		it := src.MapRange()
		for it.Next() {
			k := reflect.New(t.Key()).Elem()
			c.copy(k, addressable(it.Key()))
			val := reflect.New(t.Elem()).Elem()
			c.copy(val, addressable(it.Value()))
			m.SetMapIndex(k, val)
		}
		dst.Set(m)
	case reflect.Struct:
		for i := range t.NumField() {
			c.copy(settable(dst.Field(i)), settable(src.Field(i)))
		}
	case reflect.Interface:
		if src.IsNil() {
			return
		}
		inner := reflect.New(src.Elem().Type()).Elem()
		c.copy(inner, addressable(src.Elem()))
		dst.Set(inner)
	default:
		dst.Set(src)
	}
}

// settable returns an addressable v (a struct field, slice or array element)
// without the read-only flag that reflection puts on unexported fields.
func settable(v reflect.Value) reflect.Value {
	if !v.CanAddr() {
		return addressable(v)
	}
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

// addressable returns an addressable copy of v (a map entry or an interface's
// dynamic value), which reflection does not let us address in place. v never
// carries the read-only flag: the copier reaches every container through
// settable.
func addressable(v reflect.Value) reflect.Value {
	p := reflect.New(v.Type()).Elem()
	p.Set(v)
	return p
}
