//! Rendered settings pages, per session, for the page view that happens most: a known browser
//! loading its settings. An entry is used only when the settings and version it was rendered from
//! are exactly the ones just read, so it can never show anything the database no longer says.

use crate::lock::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;

use crate::metrics::metrics;
use crate::session::SessionId;
use crate::settings::Settings;

/// Pages kept at most (about 2.6 KB each).
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct PageCache {
    pages: Mutex<HashMap<SessionId, (Settings, i64, u64, Bytes)>>,
}

impl PageCache {
    /// The page rendered for `id` from exactly `settings` at `version`, with the devices part
    /// `stamp` stands for, if there is one.
    pub fn get(
        &self,
        id: SessionId,
        settings: &Settings,
        version: i64,
        stamp: u64,
    ) -> Option<Bytes> {
        let pages = self.pages.lock();
        match pages.get(&id) {
            Some((s, v, t, html)) if *v == version && *t == stamp && s == settings => {
                Some(html.clone())
            }
            _ => None,
        }
    }

    /// Keeps a page rendered for `id` from `settings` at `version`, its devices part `stamp`.
    pub fn put(&self, id: SessionId, settings: Settings, version: i64, stamp: u64, html: Bytes) {
        let mut pages = self.pages.lock();
        if pages.len() >= CAPACITY {
            let mut n = 0usize;
            pages.retain(|_, _| {
                n += 1;
                !n.is_multiple_of(8)
            });
        }
        pages.insert(id, (settings, version, stamp, html));
    }
}

/// QR codes kept at most (about 7 KB each for a link of this server).
const QR_CAPACITY: usize = 256;

/// The QR codes of recent one-time links, keyed by the whole link (its origin and its code), so
/// each is drawn once, however often its page is viewed, and a page that links another origin
/// never gets another origin's picture.
#[derive(Default)]
pub struct QrCache {
    codes: Mutex<HashMap<String, Arc<str>>>,
}

impl QrCache {
    /// The SVG of `url`'s QR code: drawn the first time, then kept.
    pub fn svg(&self, url: &str) -> Arc<str> {
        if let Some(svg) = self.codes.lock().get(url) {
            return Arc::clone(svg);
        }
        let svg: Arc<str> = super::qr_svg(url).into();
        metrics().qr_code_drawn();
        let mut codes = self.codes.lock();
        if codes.len() >= QR_CAPACITY {
            // Codes live minutes: the oldest are long dead, and any is one drawing away.
            codes.clear();
        }
        codes.insert(url.to_owned(), Arc::clone(&svg));
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Theme;

    #[test]
    fn a_page_is_served_only_for_the_exact_settings_it_shows() {
        let cache = PageCache::default();
        let id = SessionId::generate();
        let light = Settings {
            theme: Theme::Light,
            ..Settings::default()
        };
        cache.put(id, light.clone(), 1, 7, Bytes::from_static(b"light"));
        assert_eq!(
            cache.get(id, &light, 1, 7),
            Some(Bytes::from_static(b"light"))
        );
        assert_eq!(cache.get(id, &light, 2, 7), None);
        assert_eq!(cache.get(id, &light, 1, 8), None, "another list of devices");
        assert_eq!(
            cache.get(id, &Settings::default(), 1, 7),
            None,
            "a row recreated after a prune"
        );
        assert_eq!(cache.get(SessionId::generate(), &light, 1, 7), None);
    }
}
