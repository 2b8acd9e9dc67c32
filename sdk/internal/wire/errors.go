// Package wire adapts the SDK's plain Go interfaces to the kbs.plugin.v1
// gRPC services and back. It is the only place that knows both sides, so the
// conversions and the error mapping are written once.
package wire

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gokbs/kbs/sdk"
	pb "github.com/gokbs/kbs/sdk/internal/pb/pluginv1"
)

// deadlineSlack is how close to the caller's deadline a cancellation from
// the other side still counts as that deadline passing.
const deadlineSlack = 20 * time.Millisecond

var classCodes = map[sdk.Class]codes.Code{
	sdk.ClassBadEvidence:     codes.InvalidArgument,
	sdk.ClassInvalidArgument: codes.InvalidArgument,
	sdk.ClassUnsupported:     codes.Unimplemented,
	sdk.ClassNotFound:        codes.NotFound,
	sdk.ClassUnavailable:     codes.Unavailable,
	sdk.ClassInternal:        codes.Internal,
}

// toStatus turns a plugin's error into a gRPC status that carries its class.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	class := sdk.ClassOf(err)
	st := status.New(classCodes[class], err.Error())
	if withDetail, derr := st.WithDetails(&pb.ErrorDetail{Class: string(class), Message: err.Error()}); derr == nil {
		st = withDetail
	}
	return st.Err()
}

// fromStatus turns an error returned by a gRPC call into an *sdk.Error of
// the same class as the plugin's, so errors.Is works on the host side.
// Transport failures (the plugin died, the deadline passed) are
// ClassUnavailable.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &sdk.Error{Class: sdk.ClassUnavailable, Msg: "plugin call failed: " + err.Error()}
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			return &sdk.Error{Class: sdk.Class(ed.GetClass()), Msg: ed.GetMessage()}
		}
	}
	switch st.Code() {
	case codes.DeadlineExceeded, codes.Canceled:
		ctxErr := ctx.Err()
		if ctxErr == nil {
			// The plugin saw the propagated deadline and reset the stream
			// a moment before the caller's own timer fired: the cause is
			// still the caller's deadline.
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
				ctxErr = context.DeadlineExceeded
			}
		}
		if ctxErr != nil {
			return errors.Join(&sdk.Error{Class: sdk.ClassUnavailable, Msg: "plugin call: " + ctxErr.Error()}, ctxErr)
		}
		return &sdk.Error{Class: sdk.ClassUnavailable, Msg: "plugin call: " + st.Message()}
	case codes.Unavailable:
		return &sdk.Error{Class: sdk.ClassUnavailable, Msg: "plugin unavailable: " + st.Message()}
	case codes.Unimplemented:
		return &sdk.Error{Class: sdk.ClassUnsupported, Msg: "plugin does not implement this call: " + st.Message()}
	case codes.NotFound:
		return &sdk.Error{Class: sdk.ClassNotFound, Msg: st.Message()}
	case codes.InvalidArgument:
		return &sdk.Error{Class: sdk.ClassInvalidArgument, Msg: st.Message()}
	}
	return &sdk.Error{Class: sdk.ClassInternal, Msg: "plugin error: " + st.Message()}
}

// guard runs a plugin method and turns a panic into a ClassInternal error,
// so that one bad request cannot kill the plugin process.
func guard(ctx context.Context, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			sdk.Logger().Error("plugin panicked", "panic", r, "request_id", sdk.RequestID(ctx))
			err = toStatus(sdk.Internal("plugin panicked while handling the call"))
		}
	}()
	if err := ctx.Err(); err != nil {
		return toStatus(sdk.Unavailable("call abandoned: %w", err))
	}
	return toStatus(f())
}
