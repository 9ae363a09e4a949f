//go:build !linux

package secondkernel

import (
	"context"
	"errors"
)

// run fails: user-mode Linux is a Linux program.
func run(context.Context, Options, string, func(string, ...any)) (result, error) {
	return result{}, errors.New("secondkernel: the second kernel (user-mode Linux) runs only on Linux")
}
