package testkit

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

type node struct {
	Name string
	Next *node
}

type cloneSubject struct {
	Map     map[string][]int
	Slice   []string
	Ptr     *int
	Any     any
	private []int
	Cycle   *node
	When    time.Time
	Proto   *timestamppb.Timestamp
	Arr     [2][]int
	Fn      func() int
}

func TestDeepCopySharesNoMutableMemory(t *testing.T) {
	n := 1
	cyc := &node{Name: "a"}
	cyc.Next = cyc
	orig := cloneSubject{
		Map:     map[string][]int{"k": {1}},
		Slice:   []string{"x"},
		Ptr:     &n,
		Any:     []int{1},
		private: []int{1},
		Cycle:   cyc,
		When:    time.Unix(5, 0),
		Proto:   timestamppb.New(time.Unix(6, 0)),
		Arr:     [2][]int{{1}, {2}},
		Fn:      func() int { return 1 },
	}
	cp := deepCopy(orig)
	cp.Map["k"][0] = 2
	cp.Slice[0] = "y"
	*cp.Ptr = 2
	cp.Any.([]int)[0] = 2
	cp.private[0] = 2
	cp.Cycle.Name = "b"
	cp.Proto.Seconds = 7
	cp.Arr[0][0] = 9
	if orig.Map["k"][0] != 1 || orig.Slice[0] != "x" || n != 1 || orig.Any.([]int)[0] != 1 ||
		orig.private[0] != 1 || orig.Cycle.Name != "a" || orig.Proto.Seconds != 6 || orig.Arr[0][0] != 1 {
		t.Fatalf("the copy shares memory with the original: %+v", orig)
	}
	if cp.Cycle.Next != cp.Cycle {
		t.Fatal("cycle not preserved")
	}
	if !cp.When.Equal(orig.When) || cp.Fn() != 1 {
		t.Fatal("values not copied")
	}
	var nilMap cloneSubject
	if c := deepCopy(nilMap); c.Map != nil || c.Slice != nil {
		t.Fatal("nil containers became non-nil")
	}
}

func TestDeepCopyKeepsMapCyclesAndAliasing(t *testing.T) {
	type graph struct {
		A, B map[string]any
	}
	shared := map[string]any{"n": 1}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	g := graph{A: shared, B: shared}
	cp := deepCopy(g)
	cp.A["n"] = 2
	if cp.B["n"] != 2 || shared["n"] != 1 {
		t.Fatalf("aliasing not kept: copy %v / %v, original %v", cp.A, cp.B, shared)
	}
	c := deepCopy(cyclic)
	inner, ok := c["self"].(map[string]any)
	if !ok || len(inner) != 1 {
		t.Fatalf("cycle not kept: %v", c)
	}
	inner["x"] = true
	if _, leaked := cyclic["x"]; leaked {
		t.Fatal("the copy of a cyclic map shares memory with the original")
	}
	if _, same := c["x"]; !same {
		t.Fatal("the copy's cycle does not point back to the copy")
	}
}
