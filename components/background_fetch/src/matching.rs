//! Service Workers' "request matches cached item", used by `match()` and `matchAll()`.

use crate::fetch::{Request, ResponseHead};
use serde::{Deserialize, Serialize};
use url::Url;

/// `CacheQueryOptions` (Service Workers).
///
/// <https://w3c.github.io/ServiceWorker/#dictdef-cachequeryoptions>
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheQueryOptions {
    /// `ignoreSearch`
    pub ignore_search: bool,
    /// `ignoreMethod`
    pub ignore_method: bool,
    /// `ignoreVary`
    pub ignore_vary: bool,
}

fn without_fragment(url: &Url, drop_query: bool) -> Url {
    let mut u = url.clone();
    u.set_fragment(None);
    if drop_query {
        u.set_query(None);
    }
    u
}

/// Splits a `Vary` value into its field names (comma separated, HTTP whitespace (SP, HTAB)
/// trimmed, empty entries dropped).
fn vary_field_values(value: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(value)
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']).to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Request matches cached item.
///
/// <https://w3c.github.io/ServiceWorker/#request-matches-cached-item-algorithm>
pub fn request_matches_cached_item(
    request_query: &Request,
    request: &Request,
    response: Option<&ResponseHead>,
    options: CacheQueryOptions,
) -> bool {
    // 1. If options["ignoreMethod"] is false and request's method is not `GET`, return false.
    if !options.ignore_method && request.method != "GET" {
        return false;
    }
    // 2. Let queryURL be requestQuery's url.
    // 3. Let cachedURL be request's url.
    // 4. If options["ignoreSearch"] is true, then:
    //    1. Set cachedURL's query to the empty string.
    //    2. Set queryURL's query to the empty string.
    let query_url = without_fragment(&request_query.url, options.ignore_search);
    let cached_url = without_fragment(&request.url, options.ignore_search);
    // 5. If queryURL does not equal cachedURL with exclude fragments set to true, then return
    //    false.
    if query_url != cached_url {
        return false;
    }
    // 6. If response is null, options["ignoreVary"] is true, or response's header list does
    //    not contain `Vary`, then return true.
    let Some(response) = response else {
        return true;
    };
    if options.ignore_vary {
        return true;
    }
    let Some(vary) = response.headers.get_combined("vary") else {
        return true;
    };
    // 7. Let fieldValues be the list containing the elements corresponding to the field-values
    //    of the Vary header for the value of the header with name `Vary`.
    // 8. For each fieldValue in fieldValues:
    for field_value in vary_field_values(&vary) {
        // 8.1. If fieldValue matches "*", or the combined value given fieldValue and request's
        //      header list does not match the combined value given fieldValue and
        //      requestQuery's header list, then return false.
        if field_value == "*"
            || request.headers.get_combined(&field_value)
                != request_query.headers.get_combined(&field_value)
        {
            return false;
        }
    }
    // 9. Return true.
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str, method: &str) -> Request {
        let mut r = Request::get(Url::parse(url).unwrap());
        r.method = method.into();
        r
    }

    fn resp(vary: Option<&str>) -> ResponseHead {
        let mut h = crate::fetch::HeaderList::new();
        if let Some(v) = vary {
            h.append("vary", v);
        }
        ResponseHead {
            status: 200,
            status_text: "OK".into(),
            headers: h,
            url_list: vec![],
            response_type: Default::default(),
            resume_headers: Default::default(),
        }
    }

    #[test]
    fn url_equality_ignores_fragment() {
        let q = req("https://a/x#f", "GET");
        assert!(request_matches_cached_item(
            &q,
            &req("https://a/x", "GET"),
            None,
            Default::default()
        ));
        assert!(!request_matches_cached_item(
            &q,
            &req("https://a/y", "GET"),
            None,
            Default::default()
        ));
    }

    #[test]
    fn ignore_search_and_method() {
        let q = req("https://a/x", "GET");
        let with_query = req("https://a/x?id=3", "GET");
        let put = req("https://a/x", "PUT");
        let o = CacheQueryOptions::default();
        assert!(!request_matches_cached_item(&q, &with_query, None, o));
        assert!(request_matches_cached_item(
            &q,
            &with_query,
            None,
            CacheQueryOptions {
                ignore_search: true,
                ..o
            }
        ));
        assert!(!request_matches_cached_item(&q, &put, None, o));
        assert!(request_matches_cached_item(
            &q,
            &put,
            None,
            CacheQueryOptions {
                ignore_method: true,
                ..o
            }
        ));
    }

    #[test]
    fn vary_compares_request_headers() {
        let mut q = req("https://a/x", "GET");
        q.headers.append("accept-language", "fr");
        let mut cached = req("https://a/x", "GET");
        cached.headers.append("accept-language", "en");
        let o = CacheQueryOptions::default();
        assert!(request_matches_cached_item(
            &q,
            &cached,
            Some(&resp(None)),
            o
        ));
        assert!(!request_matches_cached_item(
            &q,
            &cached,
            Some(&resp(Some("Accept-Language"))),
            o
        ));
        assert!(request_matches_cached_item(
            &q,
            &cached,
            Some(&resp(Some("Accept-Language"))),
            CacheQueryOptions {
                ignore_vary: true,
                ..o
            }
        ));
        assert!(request_matches_cached_item(
            &q,
            &cached,
            Some(&resp(Some("x-other"))),
            o
        ));
        assert!(!request_matches_cached_item(
            &q,
            &cached,
            Some(&resp(Some("*"))),
            o
        ));
    }

    #[test]
    fn vary_members_are_trimmed_of_http_whitespace_only() {
        // U+00A0 is not HTTP whitespace: `accept\u{a0}` names no header the requests have.
        let mut cached = req("https://a/x", "GET");
        cached.headers.append("accept", "a");
        let query = req("https://a/x", "GET");
        let opts = CacheQueryOptions::default();
        assert!(request_matches_cached_item(
            &query,
            &cached,
            Some(&resp(Some("accept\u{a0}"))),
            opts
        ));
        assert!(!request_matches_cached_item(
            &query,
            &cached,
            Some(&resp(Some("\taccept "))),
            opts
        ));
    }
}
