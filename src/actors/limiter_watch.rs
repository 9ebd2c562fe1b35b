//! LimiterWatch: keeps this worker's limiters in step with definitions
//! changed at run time (`PUT /limiters/{name}`, stored in Redis).
//!
//! It owns the refresh: every half second it reads the stored definitions,
//! lays them over the configured limiters by name, and puts the result in
//! force for the following claims when it changed. It must never enforce
//! a limit itself, and keeps the limiters it has while Redis is unreachable.

use std::time::Duration;

use actix::prelude::*;

use crate::limiters::{control, Limiter, LimiterBook};
use crate::redis_queue::RedisQueue;

/// How often the stored definitions are read.
pub(crate) const REFRESH: Duration = Duration::from_millis(500);

pub(crate) struct LimiterWatch {
    redis: RedisQueue,
    configured: Vec<Limiter>,
    book: LimiterBook,
    busy: bool,
}

impl LimiterWatch {
    pub(crate) fn new(
        redis: RedisQueue,
        configured: Vec<Limiter>,
        book: LimiterBook,
    ) -> LimiterWatch {
        LimiterWatch {
            redis,
            configured,
            book,
            busy: false,
        }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let (redis, configured) = (self.redis.clone(), self.configured.clone());
        let read = async move { control::in_force(&configured, &redis).await };
        ctx.spawn(read.into_actor(self).map(|result, act, _| {
            act.busy = false;
            match result {
                Ok(limiters) if *act.book.current() != limiters => {
                    log::info!(
                        target: "conveyor::limiters",
                        "limiters in force: {:?}",
                        limiters.iter().map(|l| &l.config).collect::<Vec<_>>()
                    );
                    act.book.replace(limiters);
                }
                Ok(_) => {}
                Err(error) => {
                    log::debug!(target: "conveyor::limiters", "reading stored limiters failed (the current ones stay in force): {error}")
                }
            }
        }));
    }
}

impl Actor for LimiterWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.refresh(ctx);
        ctx.run_interval(REFRESH, |act, ctx| act.refresh(ctx));
    }
}
