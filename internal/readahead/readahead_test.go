package readahead

import (
	"errors"
	"slices"
	"testing"
)

func TestTake(t *testing.T) {
	var p Page[int]
	if _, ok := p.Take(0, 2); ok {
		t.Fatal("took a page never read")
	}
	p.Start(10, func() ([]int, error) { return []int{11, 12}, nil })
	if got, ok := p.Take(10, 2); !ok || !slices.Equal(got, []int{11, 12}) {
		t.Fatalf("Take = %v, %v", got, ok)
	}
	if _, ok := p.Take(10, 2); ok {
		t.Fatal("a page was taken twice")
	}
	for _, tt := range []struct {
		name  string
		after int64
		items []int
		err   error
	}{
		{"another position", 9, []int{11, 12}, nil},
		{"not full", 10, []int{11}, nil},
		{"failed", 10, []int{11, 12}, errors.New("read failed")},
	} {
		p.Start(tt.after, func() ([]int, error) { return tt.items, tt.err })
		if _, ok := p.Take(10, 2); ok {
			t.Errorf("%s: taken", tt.name)
		}
	}
	p.Start(1, func() ([]int, error) { return nil, nil })
	p.Wait()
	p.Wait() // idempotent
}
