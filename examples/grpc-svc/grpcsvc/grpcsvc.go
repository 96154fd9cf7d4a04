// Package grpcsvc is the gRPC service of examples/grpc-svc: a stock grpc-go
// server with gRPC's own interop test service (grpc.testing.TestService), the
// standard health service (grpc.health.v1.Health) and server reflection, each
// registered under its own name. Nothing in it knows about slugway: through the
// proxy it is reached by host name (grpc-svc.<domain>), with paths unchanged.
package grpcsvc

import (
	"context"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Metadata the service echoes, as gRPC's interop tests define them: the value of
// EchoInitial comes back in the response headers, EchoTrailer's in the trailers.
const (
	EchoInitial = "x-grpc-test-echo-initial"
	EchoTrailer = "x-grpc-test-echo-trailing-bin"
	// ErrorTrailer is set on every error the service was asked to return
	// (response_status), so that clients can check trailers beside grpc-status.
	ErrorTrailer = "grpc-svc-error"
)

// NewServer returns a grpc.Server with the services registered and the health
// service SERVING for "" and grpc.testing.TestService. id is returned as
// server_id by UnaryCall, so that callers can tell instances apart.
func NewServer(id string, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	s := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(s, &service{id: id})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(testpb.TestService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s) // grpcurl and similar tools list and describe the services without .proto files
	return s, hs
}

type service struct {
	testpb.UnimplementedTestServiceServer
	id string
}

func (s *service) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	if err := echoMetadata(ctx, nil); err != nil {
		return nil, err
	}
	return &testpb.Empty{}, nil
}

// UnaryCall answers with a payload of response_size bytes, or with the status
// response_status asks for.
func (s *service) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := echoMetadata(ctx, nil); err != nil {
		return nil, err
	}
	if err := requested(in.GetResponseStatus(), func(md metadata.MD) error { return grpc.SetTrailer(ctx, md) }); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: payload(in.GetResponseSize()), ServerId: s.id}, nil
}

// StreamingOutputCall sends one response per response_parameters entry, each
// after its interval: a stream that outlasts a deadline ends with DEADLINE_EXCEEDED.
func (s *service) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := echoMetadata(stream.Context(), stream); err != nil {
		return err
	}
	for _, p := range in.GetResponseParameters() {
		if err := wait(stream.Context(), p.GetIntervalUs()); err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
	}
	return requested(in.GetResponseStatus(), func(md metadata.MD) error { stream.SetTrailer(md); return nil })
}

// StreamingInputCall answers with the total size of the payloads received.
func (s *service) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var n int32
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(in.GetPayload().GetBody()))
	}
}

// FullDuplexCall answers each request as it comes: with the responses its
// response_parameters ask for, or, without any, with its own payload echoed.
// A request with response_status ends the call with that status.
func (s *service) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	if err := echoMetadata(stream.Context(), stream); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := requested(in.GetResponseStatus(), func(md metadata.MD) error { stream.SetTrailer(md); return nil }); err != nil {
			return err
		}
		if len(in.GetResponseParameters()) == 0 {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
				return err
			}
		}
		for _, p := range in.GetResponseParameters() {
			if err := wait(stream.Context(), p.GetIntervalUs()); err != nil {
				return err
			}
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
				return err
			}
		}
	}
}

func payload(size int32) *testpb.Payload {
	if size <= 0 {
		return nil
	}
	return &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, size)}
}

// requested returns the error st asks for (nil for none or OK), after setting ErrorTrailer.
func requested(st *testpb.EchoStatus, setTrailer func(metadata.MD) error) error {
	if st == nil || codes.Code(st.GetCode()) == codes.OK {
		return nil
	}
	if err := setTrailer(metadata.Pairs(ErrorTrailer, "requested")); err != nil {
		return err
	}
	return status.Error(codes.Code(st.GetCode()), st.GetMessage())
}

// echoMetadata sends back EchoInitial in the headers and EchoTrailer in the trailers.
func echoMetadata(ctx context.Context, stream grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(EchoInitial); len(v) > 0 {
		h := metadata.Pairs(EchoInitial, v[0])
		var err error
		if stream != nil {
			err = stream.SetHeader(h)
		} else {
			err = grpc.SetHeader(ctx, h)
		}
		if err != nil {
			return err
		}
	}
	if v := md.Get(EchoTrailer); len(v) > 0 {
		t := metadata.Pairs(EchoTrailer, v[0])
		if stream != nil {
			stream.SetTrailer(t)
		} else if err := grpc.SetTrailer(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// wait sleeps us microseconds, or returns the status of ctx ending first.
func wait(ctx context.Context, us int32) error {
	if us <= 0 {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return nil
	}
	t := time.NewTimer(time.Duration(us) * time.Microsecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
