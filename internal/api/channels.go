package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// channelStore is what the channel routes need.
type channelStore interface {
	Publish(ctx context.Context, m store.Message) (int64, error)
	Subscribe(ctx context.Context, channel string, buffer, budget int) (*store.Subscription, error)
}

type publishRequest struct {
	Message *string `json:"message"`
}

type publishResponse struct {
	Receivers int64 `json:"receivers"`
}

// messageEvent is a channel's message as a stream carries it.
type messageEvent struct {
	Channel     string    `json:"channel"`
	Message     string    `json:"message"`
	PublishedAt time.Time `json:"published_at"`
}

// messagingSystem names Redis in the messaging spans' attributes.
var messagingSystem = semconv.MessagingSystemKey.String("redis")

// channel reads and checks the :channel parameter, by the rules of keys.
func (h *handler) channel(c *gin.Context) (string, error) {
	name, err := param(c, "channel")
	if err != nil {
		return "", err
	}
	return name, checkName("channel", name, h.cfg.MaxKeyBytes)
}

// publish sends a message to a channel, inside a producer span whose
// context travels in the message, so that each delivery can be traced back
// to it.
func (h *handler) publish(c *gin.Context) error {
	channel, err := h.channel(c)
	if err != nil {
		return err
	}
	var req publishRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if req.Message == nil {
		return invalid("message is required")
	}
	if len(*req.Message) > h.cfg.MaxMessageBytes {
		return tooLarge(fmt.Sprintf("message is longer than %d bytes (MAX_MESSAGE_BYTES)", h.cfg.MaxMessageBytes))
	}
	ctx, span := h.tracer.Start(c.Request.Context(), "publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(messagingSystem, semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(channel), semconv.MessagingMessageBodySize(len(*req.Message))))
	defer span.End()
	carrier := propagation.MapCarrier{}
	observability.Propagator().Inject(ctx, carrier)
	n, err := h.store.Publish(ctx, store.Message{Channel: channel, Text: *req.Message, PublishedAt: time.Now().UTC(),
		TraceParent: carrier["traceparent"], TraceState: carrier["tracestate"]})
	if err != nil {
		span.SetStatus(codes.Error, "publish failed")
		return err
	}
	span.SetAttributes(attribute.Int64("dubebox.receivers", n))
	h.metrics.Published()
	h.reply(c, http.StatusOK, publishResponse{Receivers: n})
	return nil
}

// subscribe streams a channel's messages until the client leaves, the
// instance shuts down (an end event) or the subscription is lost (an
// error event).
func (h *handler) subscribe(c *gin.Context) error {
	channel, err := h.channel(c)
	if err != nil {
		return err
	}
	if err := acceptsEventStream(c); err != nil {
		return err
	}
	if headOnly(c) {
		return nil
	}
	ctx := c.Request.Context()
	sub, err := h.store.Subscribe(ctx, channel, streamBuffer, h.queueBudget())
	if err != nil {
		return err
	}
	defer sub.Close()
	serveStream(h, c, "channel", sub.C, func(s *stream, m store.Message, ok bool) bool {
		if !ok {
			s.fail(sub.Err())
			return false
		}
		defer sub.Taken(m)
		if !utf8.ValidString(m.Text) {
			h.metrics.Dropped("channel", "not_utf8")
			return true
		}
		if err := h.deliver(ctx, s, m); err != nil {
			s.writeFailed(err)
			return false
		}
		return true
	})
	return nil
}

// deliver writes one message inside a consumer span: a child of the
// publisher's span when the message carries its context (so that the
// publish's trace shows every delivery), linked to the subscriber's
// request.
func (h *handler) deliver(ctx context.Context, s *stream, m store.Message) error {
	parent := observability.Propagator().Extract(context.Background(),
		propagation.MapCarrier{"traceparent": m.TraceParent, "tracestate": m.TraceState})
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(messagingSystem, semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(m.Channel))}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	if !trace.SpanContextFromContext(parent).IsValid() {
		parent = ctx
	}
	_, span := h.tracer.Start(parent, "deliver", opts...)
	defer span.End()
	if err := s.event("message", "", messageEvent{Channel: m.Channel, Message: m.Text, PublishedAt: m.PublishedAt}); err != nil {
		span.SetStatus(codes.Error, "write failed")
		return err
	}
	h.metrics.Delivered("channel")
	return nil
}
