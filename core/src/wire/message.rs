//! The typed messages of the lafs storage protocol (see the [`wire`](super) module docs for the
//! rules each request follows on the server).

/// A storage index: the 16-byte name under which a server keeps a file's shares.
pub type StorageIndex = [u8; 16];

/// Lease secrets a client presents when it allocates shares or renews their lease.
///
/// The renew secret names the lease (presenting it again renews the same lease); the cancel secret
/// is stored alongside it, as in Tahoe, though no operation uses it today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseSecrets {
    pub renew: [u8; 32],
    pub cancel: [u8; 32],
}

/// A request from a client to a storage server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Ask for the server's protocol version, limits and free space.
    GetVersion,
    /// Allocate (where asked) and write several shares of one storage index, closing any whose
    /// last write says so: a whole small upload is one of these per server.
    ImmutableWrite {
        storage_index: StorageIndex,
        /// Lease added to newly allocated shares and renewed on shares the server already holds.
        lease: LeaseSecrets,
        /// Full length of every share allocated by this request (`ShareWrite::allocate`).
        allocated_size: u64,
        /// The file's total share count `N`; share numbers must be below it (at most 256).
        total_shares: u16,
        writes: Vec<ShareWrite>,
    },
    /// Abandon this connection's unfinished uploads of the listed shares (all of them if empty).
    ImmutableAbort {
        storage_index: StorageIndex,
        shnums: Vec<u16>,
    },
    /// Read the same byte ranges from several committed shares in one round trip.
    ImmutableRead {
        storage_index: StorageIndex,
        /// Shares wanted (empty: any share the server holds).
        shnums: Vec<u16>,
        /// At most this many shares are read (lowest share numbers first).
        max_shares: u16,
        ranges: Vec<ReadRange>,
    },
    /// Add or renew (same renew secret) a lease on every committed share of the storage index.
    AddLease {
        storage_index: StorageIndex,
        lease: LeaseSecrets,
    },
    /// Tell the server a share failed verification, so its operator can look at it.
    AdviseCorrupt {
        storage_index: StorageIndex,
        shnum: u16,
        reason: String,
    },
    /// Read the same byte ranges from several mutable shares of one storage index (every share
    /// the server holds if `shnums` is empty). Ranges are cut at the end of each share.
    MutableRead {
        storage_index: StorageIndex,
        shnums: Vec<u16>,
        ranges: Vec<ReadRange>,
    },
    /// Tahoe's `slot_testv_and_readv_and_writev`: check every share's test vectors, read
    /// `read_ranges` from every existing share, and only if all tests passed apply every share's
    /// writes, atomically with respect to other requests on the same storage index.
    MutableWrite {
        storage_index: StorageIndex,
        /// Recorded by the first write to a new slot; later writes must present the same one.
        write_enabler: [u8; 32],
        /// Added (or renewed) on every share that exists after a successful write.
        lease: LeaseSecrets,
        shares: Vec<MutableShareWrite>,
        read_ranges: Vec<ReadRange>,
    },
}

/// The tests and writes for one share inside [`Request::MutableWrite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableShareWrite {
    pub shnum: u16,
    /// All must hold for the request to be applied.
    pub tests: Vec<TestVector>,
    /// Applied in order; writing past the end zero-fills the gap.
    pub writes: Vec<DataVector>,
    /// After the writes: `Some(0)` deletes the share, a shorter length truncates it, a longer one
    /// is ignored (as in Tahoe).
    pub new_length: Option<u64>,
}

/// "The `length` bytes at `offset` equal `specimen`", reads past the end being cut short and a
/// missing share reading as empty. Tahoe's only operator in use is equality, so it is the only one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestVector {
    pub offset: u64,
    pub length: u64,
    pub specimen: Vec<u8>,
}

/// Bytes to write at an offset of a mutable share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataVector {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// One write into one share, inside [`Request::ImmutableWrite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareWrite {
    pub shnum: u16,
    /// True on the first write the client sends for this share: only such a write creates the
    /// share. A write without it to a share this connection is not uploading is refused
    /// ([`Refusal::NotAllocated`]), so pipelined writes after a failed allocation never create a
    /// share with a hole in it.
    pub allocate: bool,
    pub offset: u64,
    pub data: Vec<u8>,
    /// Commit the share after this write; its length is the end of the highest byte written.
    pub close: bool,
}

/// A byte range to read; it is cut short at the end of each share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRange {
    pub offset: u64,
    pub length: u64,
}

/// A storage server's answer to one [`Request`], carrying the same request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Version {
        /// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) of the server.
        protocol: u32,
        /// Largest share the server accepts.
        max_share_size: u64,
        /// Bytes the server can still allocate.
        available_space: u64,
        /// Bytes held by committed shares and open allocations.
        used_space: u64,
        /// Committed immutable shares plus mutable shares held.
        shares_held: u64,
    },
    ImmutableWrite {
        /// One outcome per distinct share number in the request, in the order first seen.
        results: Vec<(u16, ShareWriteOutcome)>,
        /// Every committed share the server holds for the storage index after this request
        /// (ascending), so an uploader learns of shares it did not ask about.
        held: Vec<u16>,
    },
    ImmutableRead {
        /// The shares read, ascending by share number.
        shares: Vec<ShareRead>,
        /// Every committed share the server holds for the storage index (ascending), including
        /// those not read because of `shnums` or `max_shares`.
        held: Vec<u16>,
    },
    /// Success of `ImmutableAbort`, `AddLease` and `AdviseCorrupt`.
    Done,
    /// The mutable shares read, ascending by share number (each with its current length).
    MutableRead { shares: Vec<ShareRead> },
    MutableWrite {
        /// Whether every test vector held, and so whether the writes were applied.
        applied: bool,
        /// `read_ranges` of every share that existed before the writes, ascending by share number:
        /// on a failed test this shows the writer what the slot holds now.
        reads: Vec<ShareRead>,
    },
    /// The request as a whole failed.
    Error { kind: ErrorKind, message: String },
}

/// What happened to one share of an [`Request::ImmutableWrite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareWriteOutcome {
    /// The writes were stored; `committed` says whether the share is now closed and durable.
    Written { committed: bool },
    /// The server already holds this share committed; the data was ignored and the lease renewed.
    AlreadyHave,
    /// The share was not written. If this connection was uploading it, that upload was aborted.
    Refused(Refusal),
}

/// Why a share write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not enough free space for the allocation.
    NoSpace { available: u64 },
    /// The allocation exceeds the server's maximum share size.
    TooLarge { max_share_size: u64 },
    /// Another connection is uploading this share now.
    InProgressElsewhere,
    /// The share number is not below `total_shares`.
    BadShareNumber,
    /// A write reached past the allocated size.
    OutOfBounds { allocated_size: u64 },
    /// A continuing write presented a different renew secret than the allocation did.
    WrongLeaseSecret,
    /// A write without `allocate` to a share this connection is not uploading.
    NotAllocated,
    /// The server's storage failed (disk error); the text says how.
    StoreFailure(String),
}

/// Why a whole request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request breaks a protocol rule (e.g. `total_shares` of 0 or above 256).
    BadRequest,
    /// The server holds nothing under that storage index (e.g. `AddLease`).
    NotFound,
    /// The reply would exceed the server's response limit: ask for fewer shares or bytes.
    ResponseTooLarge,
    /// The server's storage failed.
    StoreFailure,
    /// A mutable write presented a write enabler other than the one the slot recorded.
    BadWriteEnabler,
    /// A mutable write would need more space than the server has, or exceed its share size limit.
    NoSpace,
}

/// The ranges read from one share, in the order of the request's ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRead {
    pub shnum: u16,
    /// The share's committed length, so the client can learn the layout in the same round trip.
    pub share_len: u64,
    pub chunks: Vec<Vec<u8>>,
}
