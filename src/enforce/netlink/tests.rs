//! The encoding of batches and the reading of the kernel's answers.

use super::*;
use crate::target::Element;

fn host(text: &str) -> Target {
    text.parse().unwrap()
}

/// Splits an encoded batch into (type, flags, seq, payload) per message.
fn messages(bytes: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let length = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        assert!(length >= NLMSG_HDRLEN + 4 && length <= rest.len());
        assert_eq!(length % 4, 0, "messages stay 4-byte aligned");
        out.push((
            u16::from_ne_bytes(rest[4..6].try_into().unwrap()),
            u16::from_ne_bytes(rest[6..8].try_into().unwrap()),
            u32::from_ne_bytes(rest[8..12].try_into().unwrap()),
            rest[NLMSG_HDRLEN..length].to_vec(),
        ));
        rest = &rest[length..];
    }
    out
}

#[test]
fn one_ban_is_touch_delete_add_between_batch_markers() {
    let changes = [ElementChange::Add(
        host("198.51.100.7").into(),
        Some(Duration::from_millis(1500)),
    )];
    let batch = encode("syslog2ban", &changes, 41).unwrap();
    let parts = messages(&batch.bytes);
    let kinds: Vec<u16> = parts.iter().map(|m| m.0).collect();
    let new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
    let del = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM;
    assert_eq!(
        kinds,
        [NFNL_MSG_BATCH_BEGIN, new, del, new, NFNL_MSG_BATCH_END]
    );
    let seqs: Vec<u32> = parts.iter().map(|m| m.2).collect();
    assert_eq!(seqs, [42, 43, 44, 45, 46]);
    assert_eq!((batch.first, batch.acks), (43, 3));
    // Only the element messages ask for an ack; batch begin names nf_tables.
    assert_eq!(parts[0].1 & NLM_F_ACK, 0);
    assert_eq!(&parts[0].3[2..4], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
    assert_ne!(parts[1].1 & NLM_F_ACK, 0);
    assert_ne!(parts[1].1 & NLM_F_CREATE, 0);
    assert_eq!(parts[2].1 & NLM_F_CREATE, 0);
    // The final add carries the table, the set, the address and 1500 ms big-endian.
    let payload = &parts[3].3;
    assert_eq!(payload[0], NFPROTO_INET);
    let text = String::from_utf8_lossy(payload);
    assert!(text.contains("syslog2ban\0") && text.contains("banned4\0"));
    assert!(payload.windows(4).any(|w| w == [198, 51, 100, 7]));
    assert!(payload.windows(8).any(|w| w == 1500u64.to_be_bytes()));
}

#[test]
fn new_bans_are_one_exclusive_add_and_removals_never_take_that_shape() {
    let changes = [
        ElementChange::Add(host("198.51.100.7").into(), Some(Duration::from_secs(60))),
        ElementChange::Add(host("2001:db8::9").into(), None),
    ];
    let batch = encode_new("t", &changes, 0).unwrap();
    let parts = messages(&batch.bytes);
    let new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
    let kinds: Vec<u16> = parts.iter().map(|m| m.0).collect();
    assert_eq!(kinds, [NFNL_MSG_BATCH_BEGIN, new, new, NFNL_MSG_BATCH_END]);
    assert_eq!(batch.acks, 2);
    assert!(parts[1..3]
        .iter()
        .all(|m| m.1 & NLM_F_EXCL != 0 && m.1 & NLM_F_CREATE != 0));
    // The replacing shape never asks for exclusivity.
    let replacing = encode("t", &changes, 0).unwrap();
    assert!(messages(&replacing.bytes)
        .iter()
        .all(|m| m.1 & NLM_F_EXCL == 0));
    let with_removal = [
        changes[0],
        ElementChange::Remove(host("198.51.100.8").into()),
    ];
    assert!(encode_new("t", &with_removal, 0).is_none());
}

#[test]
fn families_go_to_their_sets_and_removals_have_no_final_add() {
    let changes = [
        ElementChange::Remove(host("198.51.100.7").into()),
        ElementChange::Add(host("2001:db8::9").into(), None),
    ];
    let batch = encode("t", &changes, 0).unwrap();
    let parts = messages(&batch.bytes);
    // v4: touch + delete; v6: touch + delete + add.
    assert_eq!(parts.len(), 2 + 2 + 3);
    assert_eq!(batch.acks, 5);
    assert!(String::from_utf8_lossy(&parts[1].3).contains("banned4\0"));
    assert!(String::from_utf8_lossy(&parts[3].3).contains("banned6\0"));
    // A permanent ban has no timeout attribute: its final add is shorter than its touch
    // would be with one, and carries the 16 address bytes.
    let v6: [u8; 16] = "2001:db8::9"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    assert!(parts[5].3.windows(16).any(|w| w == v6));
}

#[test]
fn prefixes_empty_and_huge_batches_are_left_to_nft() {
    assert!(encode("t", &[], 0).is_none());
    let prefix = ElementChange::Add("2001:db8:1::/48".parse().unwrap(), None);
    assert!(encode("t", &[prefix], 0).is_none());
    let many: Vec<ElementChange> = (0..=MAX_CHANGES as u32)
        .map(|i| ElementChange::Remove(Element::from(Target::host(IpAddr::from(i.to_be_bytes())))))
        .collect();
    assert!(encode("t", &many, 0).is_none());
    assert!(encode("t", &many[..MAX_CHANGES], 0).is_some());
}

#[test]
fn long_batches_are_split_into_messages_that_fit_an_attribute() {
    let many: Vec<ElementChange> = (0..MAX_CHANGES as u32)
        .map(|i| {
            ElementChange::Add(
                Target::host(IpAddr::from((i | 0x0a00_0000).to_be_bytes())).into(),
                Some(Duration::from_secs(600)),
            )
        })
        .collect();
    let batch = encode("t", &many, 0).unwrap();
    let per_step = MAX_CHANGES.div_ceil(ELEMENTS_PER_MESSAGE) as u32;
    assert_eq!(batch.acks, 3 * per_step);
    assert!(messages(&batch.bytes).iter().all(|m| m.3.len() < 65_535));
}

#[test]
fn acks_are_read_from_a_datagram_of_several_answers() {
    let mut datagram = Vec::new();
    for (seq, code) in [(7u32, 0i32), (8, -2)] {
        datagram.extend_from_slice(&36u32.to_ne_bytes());
        datagram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        datagram.extend_from_slice(&0u16.to_ne_bytes());
        datagram.extend_from_slice(&seq.to_ne_bytes());
        datagram.extend_from_slice(&0u32.to_ne_bytes());
        datagram.extend_from_slice(&code.to_ne_bytes());
        datagram.extend_from_slice(&[0u8; 16]); // the echoed request header
    }
    assert_eq!(acks(&datagram).unwrap(), [(7, 0), (8, -2)]);
    assert!(matches!(
        acks(&datagram[..30]),
        Err(NetlinkError::Garbled(_))
    ));
}

#[test]
fn the_generation_is_read_from_its_answer_and_ack() {
    let header = |out: &mut Vec<u8>, length: u32, kind: u16, seq: u32| {
        out.extend_from_slice(&length.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
    };
    let newgen = |out: &mut Vec<u8>, seq: u32, generation: u32| {
        header(out, 28, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN, seq);
        out.extend_from_slice(&[0; 4]); // nfgenmsg
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        out.extend_from_slice(&generation.to_be_bytes());
    };
    let ack = |out: &mut Vec<u8>, seq: u32, code: i32| {
        header(out, 20, NLMSG_ERROR, seq);
        out.extend_from_slice(&code.to_ne_bytes());
    };
    let mut datagram = Vec::new();
    // An answer to an earlier request, then this one's.
    newgen(&mut datagram, 6, 40);
    newgen(&mut datagram, 7, 42);
    ack(&mut datagram, 7, 0);
    assert_eq!(generation_in(&datagram, 7).unwrap(), (Some(42), true));
    assert_eq!(generation_in(&datagram[..28], 7).unwrap(), (None, false));
    let mut refused = Vec::new();
    ack(&mut refused, 7, -1);
    assert!(matches!(
        generation_in(&refused, 7),
        Err(NetlinkError::Refused(_))
    ));
    // A NEWGEN cut short of its attributes reads as none, without a panic.
    let mut short = Vec::new();
    header(
        &mut short,
        16,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN,
        7,
    );
    assert_eq!(generation_in(&short, 7).unwrap(), (None, false));
}
