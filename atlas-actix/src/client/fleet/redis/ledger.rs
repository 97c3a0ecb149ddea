//! The fleet's ledger of pending usage on Redis: the same accounts as the in-process ledger
//! (`client::ledger`), one per customer and quota feature, shared by every instance, so the
//! fleet counts what each instance let through as one app does.
//!
//! The engine's rules stay in Rust. A check reads the pending units (`DECIDE` without a hold),
//! decides, and sends with its hold the most pending units its answer still allows for each
//! feature; the script takes the hold only if the fleet's pending units are within that, in
//! the same step as it reads them. The rules only allow less as more is pending, so a hold
//! the script takes is one the check allowed; when another instance took units in between,
//! the script answers the new figures and the check decides again.
//!
//! An account is five keys under `<namespace>:ledger:<customer, feature>`: a hash (`high`, the
//! highest platform figure seen; `pending`, the units held and reported; `seq`), the holds by
//! expiry (`:h`), reported events in order (`:r`), the accepted ones by the end of their
//! metering lag (`:d`), and each entry's units (`:u`). Every script ends by setting the
//! account's expiry, so the account of a customer nobody checks leaves Redis by itself, and
//! the holds of a dead instance stop counting at their expiry. Times are Redis's own clock.
//! Scripts name keys derived from the account's, so the tier needs one Redis server (not a
//! cluster), as its cache does.

use std::sync::LazyLock;
use std::time::Duration;

use super::RedisTier;
use crate::client::keys;

/// Shared by the scripts: the time, and the operations on an account's entries.
/// `ARGV[1]` is always the prefix of the event index, `ARGV[2]` the accounts' lifetime (ms).
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local index_prefix, keep = ARGV[1], tonumber(ARGV[2])
local function fmt(x) return string.format('%.17g', x) end
local function index(key) return index_prefix .. #key .. ':' .. key end
local function add(base, by)
  local pending = tonumber(redis.call('HGET', base, 'pending') or '0') + by
  if redis.call('ZCARD', base .. ':h') + redis.call('ZCARD', base .. ':r') == 0 then pending = 0 end
  redis.call('HSET', base, 'pending', fmt(pending))
end
local function drop_hold(base, id)
  local units = redis.call('HGET', base .. ':u', 'h' .. id)
  redis.call('ZREM', base .. ':h', id)
  if units then
    redis.call('HDEL', base .. ':u', 'h' .. id)
    add(base, -tonumber(units))
  end
end
local function drop_reported(base, key)
  local units = redis.call('HGET', base .. ':u', 'e' .. key)
  redis.call('ZREM', base .. ':r', key)
  redis.call('ZREM', base .. ':d', key)
  redis.call('DEL', index(key))
  if units then
    redis.call('HDEL', base .. ':u', 'e' .. key)
    add(base, -tonumber(units))
  end
end
local function touch(base)
  for _, suffix in ipairs({'', ':h', ':r', ':d', ':u'}) do
    redis.call('PEXPIRE', base .. suffix, keep)
  end
end
";

/// Per account (`KEYS`): expired holds and reported entries past their lag leave; the
/// platform's figure (`ARGV[3 + 2i]`) grew since the highest seen: the growth is matched to
/// reported entries, oldest first. Answers `{held, extra...}`: the units to add to each figure.
/// With units to hold (`ARGV[3]`, and the hold's id `ARGV[4]`, its lifetime `ARGV[5]`), they
/// are held in every account when each one's extra is at most its limit (`ARGV[4 + 2i]`).
const DECIDE: &str = r"
local units = tonumber(ARGV[3])
local fits = units ~= nil
local extras = {}
for i, base in ipairs(KEYS) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', base .. ':h', '-inf', now)) do drop_hold(base, id) end
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', base .. ':d', '-inf', now)) do drop_reported(base, key) end
  local figure = tonumber(ARGV[4 + 2 * i])
  local high = tonumber(redis.call('HGET', base, 'high'))
  if high and figure > high then
    local grown = figure - high
    while grown > 0 do
      local oldest = redis.call('ZRANGE', base .. ':r', 0, 0)[1]
      if not oldest then break end
      local left = tonumber(redis.call('HGET', base .. ':u', 'e' .. oldest) or '0')
      local counted = math.min(grown, left)
      grown = grown - counted
      if counted >= left then
        drop_reported(base, oldest)
      else
        redis.call('HSET', base .. ':u', 'e' .. oldest, fmt(left - counted))
        add(base, -counted)
      end
    end
  end
  if (not high) or figure > high then
    high = figure
    redis.call('HSET', base, 'high', fmt(figure))
  end
  local extra = (high - figure) + tonumber(redis.call('HGET', base, 'pending') or '0')
  extras[i] = fmt(extra)
  local limit = ARGV[5 + 2 * i]
  if limit ~= 'inf' and extra > tonumber(limit) then fits = false end
end
if fits then
  for _, base in ipairs(KEYS) do
    redis.call('ZADD', base .. ':h', now + tonumber(ARGV[5]), ARGV[4])
    redis.call('HSET', base .. ':u', 'h' .. ARGV[4], fmt(units))
    add(base, units)
  end
end
for _, base in ipairs(KEYS) do touch(base) end
table.insert(extras, 1, fits and 1 or 0)
return extras
";

/// The hold `ARGV[3]` (if any) of account `KEYS[1]` becomes the reported event `ARGV[4]` of
/// `ARGV[5]` units, unless that event is pending already (the platform counts a key once).
const REPORT: &str = r"
local base, hold, key = KEYS[1], ARGV[3], ARGV[4]
if hold ~= '' then drop_hold(base, hold) end
if redis.call('EXISTS', index(key)) == 0 then
  local seq = redis.call('HINCRBY', base, 'seq', 1)
  redis.call('ZADD', base .. ':r', seq, key)
  redis.call('HSET', base .. ':u', 'e' .. key, ARGV[5])
  add(base, tonumber(ARGV[5]))
  redis.call('SET', index(key), base, 'PX', keep)
end
touch(base)
return 1
";

/// Releases the hold `ARGV[3]` in each account.
const RELEASE: &str = r"
for _, base in ipairs(KEYS) do drop_hold(base, ARGV[3]) end
return 1
";

/// The events `ARGV[5..]` were accepted (`ARGV[3]` is `accepted`: their lag of `ARGV[4]` ms
/// starts) or refused (they stop counting).
const SETTLE: &str = r"
local accepted, lag = ARGV[3] == 'accepted', tonumber(ARGV[4])
for i = 5, #ARGV do
  local key = ARGV[i]
  local base = redis.call('GET', index(key))
  if base then
    if not accepted then
      drop_reported(base, key)
    elseif redis.call('ZSCORE', base .. ':r', key) then
      redis.call('ZADD', base .. ':d', 'NX', now + lag, key)
    end
  end
end
return 1
";

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}{body}"))
}

static DECIDE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(DECIDE));
static REPORT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(REPORT));
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(RELEASE));
static SETTLE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(SETTLE));

/// The pending units the fleet's ledger answered, and whether it took the hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub(crate) held: bool,
    /// The units to add to each figure, in the order given.
    pub(crate) extra: Vec<f64>,
}

/// A hold to take: its id and units, and for each feature the most pending units that still
/// let it in.
#[derive(Debug)]
pub(crate) struct HoldRequest<'a> {
    pub(crate) id: &'a str,
    pub(crate) units: f64,
    pub(crate) limits: &'a [f64],
}

/// Lifetimes of the entries: what the in-process ledger is configured with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) hold_ttl: Duration,
    pub(crate) metering_lag: Duration,
}

impl Lifetimes {
    /// How long an account nobody touches stays: past its last hold and its last lag.
    fn keep_ms(self) -> u64 {
        (self.hold_ttl.max(self.metering_lag) + self.metering_lag).as_millis() as u64
    }
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:?}")
    } else {
        "inf".to_owned()
    }
}

impl RedisTier {
    fn account(&self, customer: &str, feature: &str) -> String {
        format!(
            "{}:ledger:{}",
            self.namespace,
            keys::compose(&[customer, feature])
        )
    }

    fn event_index(&self) -> String {
        format!("{}:ledger:event:", self.namespace)
    }

    fn invocation(
        &self,
        script: &'static redis::Script,
        lifetimes: Lifetimes,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.event_index()).arg(lifetimes.keep_ms());
        invocation
    }

    /// The fleet's pending units of each feature, with their figures reconciled; with `hold`,
    /// the hold taken when every feature's pending units are within its limit. `None` when
    /// Redis is unavailable.
    pub(crate) async fn pending(
        &self,
        lifetimes: Lifetimes,
        customer: &str,
        figures: &[(&str, f64)],
        hold: Option<HoldRequest<'_>>,
    ) -> Option<Pending> {
        let mut invocation = self.invocation(&DECIDE_SCRIPT, lifetimes);
        match &hold {
            Some(hold) => invocation
                .arg(number(hold.units))
                .arg(hold.id)
                .arg(lifetimes.hold_ttl.as_millis() as u64),
            None => invocation.arg("").arg("").arg(0),
        };
        for (at, (feature, figure)) in figures.iter().enumerate() {
            invocation.key(self.account(customer, feature));
            let limit = hold.as_ref().map_or(f64::INFINITY, |hold| hold.limits[at]);
            invocation.arg(number(*figure)).arg(number(limit));
        }
        let answer: Vec<String> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let (held, extra) = answer.split_first()?;
        Some(Pending {
            held: held == "1",
            extra: extra
                .iter()
                .map(|units| units.parse().unwrap_or(0.0))
                .collect(),
        })
    }

    /// A hold (or no hold) of `feature` reported as the event `key` of `units`; `false` when
    /// Redis is unavailable.
    pub(crate) async fn report(
        &self,
        lifetimes: Lifetimes,
        customer: &str,
        feature: &str,
        hold: Option<&str>,
        key: &str,
        units: f64,
    ) -> bool {
        let mut invocation = self.invocation(&REPORT_SCRIPT, lifetimes);
        invocation
            .key(self.account(customer, feature))
            .arg(hold.unwrap_or(""))
            .arg(key)
            .arg(number(units));
        self.run(
            |mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await },
        )
        .await
        .is_some()
    }

    /// Releases the hold `id` of each feature.
    pub(crate) async fn release(
        &self,
        lifetimes: Lifetimes,
        customer: &str,
        features: &[&str],
        id: &str,
    ) {
        let mut invocation = self.invocation(&RELEASE_SCRIPT, lifetimes);
        invocation.arg(id);
        for feature in features {
            invocation.key(self.account(customer, feature));
        }
        self.run(
            |mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await },
        )
        .await;
    }

    /// Events the platform accepted (their lag starts) or refused (they stop counting).
    pub(crate) async fn settle(&self, lifetimes: Lifetimes, keys: &[&str], accepted: bool) {
        let mut invocation = self.invocation(&SETTLE_SCRIPT, lifetimes);
        invocation
            .arg(if accepted { "accepted" } else { "refused" })
            .arg(lifetimes.metering_lag.as_millis() as u64);
        for key in keys {
            invocation.arg(*key);
        }
        self.run(
            |mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await },
        )
        .await;
    }
}
