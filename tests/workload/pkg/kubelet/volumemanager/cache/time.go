package cache

import "time"

type timeNow = time.Time

func now() time.Time { return time.Now() }
