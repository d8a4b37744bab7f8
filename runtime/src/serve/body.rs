//! A response body that ends with an error, not as if it were complete, when its instance was
//! stopped first (a limit, a trap): the guest's stream just ends when its store goes, and a
//! client would take a cut-off body for the whole one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, WasiBody};

use super::RequestEnd;

pub(super) struct Cut {
    body: WasiBody,
    end: Arc<RequestEnd>,
}

impl Cut {
    pub(super) fn wrap(body: WasiBody, end: Arc<RequestEnd>) -> WasiBody {
        Cut { body, end }.boxed_unsync()
    }
}

impl Body for Cut {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) if self.end.failed() => {
                Poll::Ready(Some(Err(Error::HttpResponseIncomplete)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream() && !self.end.failed()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
