package redis

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/projection"
)

// StartRebuild implements [projection.Rebuilder]. The new generation gets
// keys of its own; queries keep reading the current one until
// FinishRebuild.
func (s *Store) StartRebuild(ctx context.Context, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	building := projection.RebuildName(name)
	k, b := s.keysOf(name), s.keysOf(building)
	var current string
	var abandoned int64
	err := s.watch(ctx, func(conn *redis.Tx) error {
		var err error
		current, err = conn.Get(ctx, k.rebuilding()).Result()
		if err == nil {
			return nil
		}
		if !errors.Is(err, redis.Nil) {
			return err
		}
		current = building
		// An abandoned attempt's generation, if any, is deleted below.
		st, err := readState(ctx, conn, b.checkpoint)
		if err != nil {
			return err
		}
		abandoned = st.gen
		_, err = conn.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Del(ctx, b.checkpoint, b.dead)
			pipe.Set(ctx, k.rebuilding(), building, 0)
			return nil
		})
		return err
	}, k.rebuilding(), b.checkpoint)
	if err == nil && abandoned != 0 {
		err = unlinkMatching(ctx, s.client, globEscape(k.generation(abandoned))+"*")
	}
	if err != nil {
		return "", fmt.Errorf("projection/redis: start rebuild of %s: %w", name, err)
	}
	return current, nil
}

// Rebuilding implements [projection.Rebuilder].
func (s *Store) Rebuilding(ctx context.Context, name string) (string, bool, error) {
	if err := checkName(name); err != nil {
		return "", false, err
	}
	building, err := s.client.Get(ctx, s.keysOf(name).rebuilding()).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("projection/redis: rebuild of %s: %w", name, err)
	}
	return building, true, nil
}

// FinishRebuild implements [projection.Rebuilder]. One transaction points
// the live checkpoint at the new generation, with its position and dead
// letters; the old generation's keys are deleted after it.
func (s *Store) FinishRebuild(ctx context.Context, name, building string) error {
	if err := checkName(name); err != nil {
		return err
	}
	k, b := s.keysOf(name), s.keysOf(building)
	var old int64
	err := s.watch(ctx, func(conn *redis.Tx) error {
		current, err := conn.Get(ctx, k.rebuilding()).Result()
		if errors.Is(err, redis.Nil) || (err == nil && current != building) {
			return fmt.Errorf("%w: no rebuild %q of %s in progress", projection.ErrInvalid, building, name)
		}
		if err != nil {
			return err
		}
		live, err := readState(ctx, conn, k.checkpoint)
		if err != nil {
			return err
		}
		next, err := readState(ctx, conn, b.checkpoint)
		if err != nil {
			return err
		}
		hasDead, err := conn.Exists(ctx, b.dead).Result()
		if err != nil {
			return err
		}
		old = live.gen
		_, err = conn.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Del(ctx, k.checkpoint, k.dead)
			if next.gen != 0 {
				ready := 0
				if next.ready {
					ready = 1
				}
				pipe.HSet(ctx, k.checkpoint, "pos", next.pos, "gen", next.gen, "ready", ready)
			} else if next.pos != 0 {
				pipe.HSet(ctx, k.checkpoint, "pos", next.pos)
			}
			if hasDead == 1 {
				pipe.Rename(ctx, b.dead, k.dead)
			}
			pipe.Del(ctx, b.checkpoint, k.rebuilding())
			return nil
		})
		return err
	}, k.rebuilding(), k.checkpoint, b.checkpoint, b.dead)
	if err == nil && old != 0 {
		err = unlinkMatching(ctx, s.client, globEscape(k.generation(old))+"*")
	}
	if errors.Is(err, projection.ErrInvalid) {
		return err
	}
	if err != nil {
		return fmt.Errorf("projection/redis: finish rebuild of %s: %w", name, err)
	}
	return nil
}
