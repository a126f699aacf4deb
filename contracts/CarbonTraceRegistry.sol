// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title CarbonTrace registry and Merkle-log anchor
/// @notice The operator (the CarbonTrace cloud's account) registers enterprises, carbon-trading platforms,
/// the keys of devices and gateways and the cloud's own signing keys, and anchors checkpoints of the append-only
/// Merkle log of signed readings. One transaction per checkpoint, whatever the number of readings it covers.
/// @dev Decisions:
///  - A binding is requested by the enterprise's own key and confirmed or rejected by the platform's own key,
///    never by the operator: either the party sends the transaction from its registered account, or it signs an
///    EIP-712 BindingConsent (enterprise id, platform id, action, its nonce) that anyone (the cloud's operator
///    account in practice) relays with requestBindingSigned / confirmBindingSigned / rejectBindingSigned; the
///    contract recovers the signer with ecrecover and compares it with the account stored at registration.
///    Each account's nonce counts its signed consents, so a signature works once. The event's sender is the
///    party's account in both cases.
///  - Either side (enterprise account, platform account, or operator for the enterprise) may unbind a Bound pair.
///    Rejected and Revoked pairs may be requested again; every transition emits an event.
///  - A key fingerprint (sha256 of the 65-byte SEC1 public key) can be registered once, ever, to one signer (a
///    device, which signs readings, or a gateway, which signs batches and aggregates). A revoked key stays
///    revoked: registering it again reverts with KeyRevoked. A signer has at most one active key; rotating means
///    revoke then register, two events that anyone can audit. A signer belongs to one enterprise. Devices and
///    gateways are separate id spaces with their own events; keyState says which kind holds a key.
///  - Cloud keys (the keys the cloud signs checkpoints and statements with) follow the same rules in a third id
///    space, without an enterprise; only the operator registers or revokes them.
///  - A key is valid from a point in the log, not "now": its record stores activeFrom, the checkpoint count when
///    it was registered (the first checkpoint sequence anchored while it is active), and revokedAt, the count when
///    it was revoked. A verifier accepts a signature in a batch first anchored under checkpoint S iff
///    activeFrom <= S and (state == Active or S < revokedAt): revoking a key voids what comes after, not the
///    history anchored before. Both counters share the record's slot with state and kind.
///  - keyState returns everything a verifier needs about a key in one call, the signer's enterprise included
///    (read from the signer record: a signer never changes enterprise, so it is not copied into the key record).
///  - Completeness: the first registration of a device or gateway id appends it to its enterprise's list of
///    that kind (signerCount / signerAt), once, whatever the rotations after; a statement verifier can therefore
///    enumerate every signer an enterprise ever had. The lists only grow.
///  - Operator hand-over is two-step (transferOperator, then acceptOperator by the new account).
///  - Gas: one storage slot per checkpoint. The chain stores a commitment, keccak256(treeSize as 8 bytes
///    big-endian || root || cid bytes) (carbontrace_protocol/anchor_commitment.py is the one off-chain
///    definition), and the CheckpointAnchored event carries the fields themselves; a verifier reads the event
///    and accepts it only if it hashes to the stored commitment, so what it checks is still fixed by contract
///    storage. The checkpoint count and the latest tree size share the operator's slot (read anyway by
///    onlyOperator), so an anchor writes one new slot and rewrites one warm slot, whatever the tree size.
///    A checkpoint must grow the log (treeSize > the latest): the cloud never anchors an unchanged log, and the
///    rule keeps a re-sent anchor from being recorded twice. CIDs are limited to 64 bytes (a CIDv1 base32
///    sha2-256 CID is 59, a CIDv0 46); tree sizes and counts to 2^48 - 1. Key validity is recorded by the key
///    transactions (which read the counter), so anchorCheckpoint never touches key storage.
///  - Succession (docs/proof-bundle.md, "The chain of registries"): a registry is never upgraded in place. A
///    successor is deployed with its predecessor's address and the predecessor's final checkpoint (its count,
///    tree size and commitment) as immutables, checked against the predecessor at construction. It continues the
///    same log: its checkpoint count and latest tree size start at the predecessor's, so sequence numbers and
///    key validity counters run on across the hand-over, and its first checkpoint must grow the log. The
///    predecessor is then sealed by its operator (sealFor: checks that the successor records exactly its final
///    checkpoint, then sets `successor` once and gives up the operator role): every write reverts with
///    RegistrySealed afterwards, so history cannot fork. Registrations are carried, not referred to: before its
///    first anchor the successor's operator copies every enterprise, platform, binding state and key record (with
///    its original activeFrom and revokedAt) with the import* calls, so a verifier pinned to the successor reads
///    one registry for keys; a verifier following the chain checks each carried record against the predecessor.
///    The seal costs anchorCheckpoint nothing: the operator slot is read anyway, and `successor` is read only on
///    the failure path of onlyOperator.
contract CarbonTraceRegistry {
    enum BindingState {
        None,
        Requested,
        Bound,
        Rejected,
        Revoked
    }

    enum KeyState {
        None,
        Active,
        Revoked
    }

    struct Party {
        address account;
        string name;
    }

    enum SignerKind {
        None,
        Device,
        Gateway,
        Cloud
    }

    struct Signer {
        bytes32 enterpriseId;
        bytes32 keyFingerprint; // the active key, or zero when none
    }

    /// @dev Two slots: state, kind, activeFrom and revokedAt share the first.
    struct KeyRecord {
        KeyState state;
        SignerKind kind;
        uint64 activeFrom; // checkpoint count at registration
        uint64 revokedAt; // checkpoint count at revocation; meaningful only when state == Revoked
        bytes32 signerId;
    }

    uint256 public constant MAX_CID_LENGTH = 64;
    uint256 public constant MAX_TREE_SIZE = type(uint48).max;

    /// @dev Binding consent actions in the signed message.
    uint8 public constant ACTION_REQUEST = 1;
    uint8 public constant ACTION_CONFIRM = 2;
    uint8 public constant ACTION_REJECT = 3;
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant BINDING_CONSENT_TYPEHASH =
        keccak256("BindingConsent(bytes32 enterpriseId,bytes32 platformId,uint8 action,uint256 nonce)");
    // secp256k1n / 2: a larger s is the malleable twin of a valid signature
    uint256 private constant _HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    error NotOperator(address caller);
    error NotPendingOperator(address caller);
    error ZeroAddress();
    error ZeroId();
    error EnterpriseAlreadyRegistered(bytes32 enterpriseId);
    error UnknownEnterprise(bytes32 enterpriseId);
    error PlatformAlreadyRegistered(bytes32 platformId);
    error UnknownPlatform(bytes32 platformId);
    error NotEnterpriseAccount(bytes32 enterpriseId, address caller);
    error NotPlatformAccount(bytes32 platformId, address caller);
    error NotBindingParty(bytes32 enterpriseId, bytes32 platformId, address caller);
    error InvalidBindingState(BindingState current);
    error KeyAlreadyRegistered(bytes32 keyFingerprint);
    error KeyRevoked(bytes32 keyFingerprint);
    error KeyNotActive(bytes32 keyFingerprint);
    error SignerHasActiveKey(bytes32 signerId, bytes32 activeKeyFingerprint);
    error SignerOfOtherEnterprise(bytes32 signerId, bytes32 ownerEnterpriseId);
    error TreeSizeNotGrowing(uint64 latestTreeSize, uint64 treeSize);
    error TreeSizeTooLarge(uint64 treeSize);
    error CheckpointOutOfRange(uint256 index, uint256 count);
    error CidLength(uint256 length);
    error SignerOutOfRange(bytes32 enterpriseId, SignerKind kind, uint256 index, uint256 count);
    error BadSignature();
    error RegistrySealed(address successor);
    error BadPredecessor(address predecessor);
    error BadSuccessor(address candidate);
    error MigrationClosed();
    error CheckpointOnPredecessor(uint256 index, address predecessor);
    error BadCarriedKey(bytes32 keyFingerprint);

    event OperatorTransferStarted(address indexed currentOperator, address indexed pendingOperator);
    event OperatorTransferred(address indexed previousOperator, address indexed newOperator);
    event EnterpriseRegistered(bytes32 indexed enterpriseId, address indexed account, string name);
    event PlatformRegistered(bytes32 indexed platformId, address indexed account, string name);
    event BindingRequested(bytes32 indexed enterpriseId, bytes32 indexed platformId, address sender);
    event BindingConfirmed(bytes32 indexed enterpriseId, bytes32 indexed platformId, address sender);
    event BindingRejected(bytes32 indexed enterpriseId, bytes32 indexed platformId, address sender);
    event BindingRevoked(bytes32 indexed enterpriseId, bytes32 indexed platformId, address sender);
    event DeviceKeyRegistered(
        bytes32 indexed enterpriseId, bytes32 indexed deviceId, bytes32 indexed keyFingerprint, address sender
    );
    event DeviceKeyRevoked(
        bytes32 indexed enterpriseId, bytes32 indexed deviceId, bytes32 indexed keyFingerprint, address sender
    );
    event GatewayKeyRegistered(
        bytes32 indexed enterpriseId, bytes32 indexed gatewayId, bytes32 indexed keyFingerprint, address sender
    );
    event GatewayKeyRevoked(
        bytes32 indexed enterpriseId, bytes32 indexed gatewayId, bytes32 indexed keyFingerprint, address sender
    );
    event CloudKeyRegistered(bytes32 indexed cloudId, bytes32 indexed keyFingerprint, address sender);
    event CloudKeyRevoked(bytes32 indexed cloudId, bytes32 indexed keyFingerprint, address sender);
    event CheckpointAnchored(uint256 indexed sequence, uint64 treeSize, bytes32 root, string cid);
    event Sealed(address indexed successor, uint64 checkpointCount, uint64 latestTreeSize);
    event BindingCarried(bytes32 indexed enterpriseId, bytes32 indexed platformId, BindingState state);
    event KeyCarried(bytes32 indexed signerId, bytes32 indexed keyFingerprint, SignerKind kind, KeyState state);

    address public operator;
    uint48 private _checkpointCount; // packed with operator: see the gas note above
    uint48 private _latestTreeSize; // the tree size of the newest checkpoint, zero before the first
    address public pendingOperator;

    mapping(bytes32 => Party) private _enterprises;
    mapping(bytes32 => Party) private _platforms;
    mapping(bytes32 => mapping(bytes32 => BindingState)) private _bindings;
    mapping(bytes32 => Signer) private _devices;
    mapping(bytes32 => Signer) private _gateways;
    mapping(bytes32 => bytes32) private _cloudKeys; // cloud id => active key fingerprint (zero when none)
    mapping(bytes32 => KeyRecord) private _keys;
    // enterprise id => signer kind => every device or gateway id it ever registered, in first-registration order
    mapping(bytes32 => mapping(SignerKind => bytes32[])) private _signers;
    mapping(uint256 => bytes32) private _commitments; // checkpoint sequence => commitment (see the gas note)
    /// @notice How many signed consents each account has given (the nonce its next consent must carry).
    mapping(address => uint256) public nonces;

    /// @notice The registry this one succeeds (zero for the first), and its final checkpoint: the count (the first
    /// sequence anchored here), the tree size and the commitment of checkpoint count-1 (zero when it had none).
    address public immutable predecessor;
    uint64 public immutable predecessorCheckpointCount;
    uint64 public immutable predecessorTreeSize;
    bytes32 public immutable predecessorCommitment;
    /// @notice The block this registry was deployed in: where a verifier starts looking for its events.
    uint256 public immutable deployedAtBlock;
    /// @notice The registry that succeeds this one, set once by sealFor; every write reverts once it is set.
    address public successor;

    constructor(address predecessor_, uint64 checkpointCount_, uint64 treeSize_, bytes32 commitment_) {
        if (predecessor_ == address(0)) {
            if (checkpointCount_ != 0 || treeSize_ != 0 || commitment_ != bytes32(0)) revert BadPredecessor(predecessor_);
        } else {
            CarbonTraceRegistry previous = CarbonTraceRegistry(predecessor_);
            if (previous.successor() != address(0)) revert BadPredecessor(predecessor_);
            uint256 count = previous.checkpointCount();
            if (checkpointCount_ != count || treeSize_ != previous.latestTreeSize()) revert BadPredecessor(predecessor_);
            if (commitment_ != (count == 0 ? bytes32(0) : previous.checkpointCommitment(count - 1))) {
                revert BadPredecessor(predecessor_);
            }
        }
        predecessor = predecessor_;
        predecessorCheckpointCount = checkpointCount_;
        predecessorTreeSize = treeSize_;
        predecessorCommitment = commitment_;
        deployedAtBlock = block.number;
        operator = msg.sender;
        // the log runs on: sequence numbers and the growth rule continue from the predecessor's final checkpoint
        (_checkpointCount, _latestTreeSize) = (uint48(checkpointCount_), uint48(treeSize_));
        emit OperatorTransferred(address(0), msg.sender);
    }

    modifier onlyOperator() {
        if (msg.sender != operator) _notOperator();
        _;
    }

    /// @dev Off the success path, so anchorCheckpoint does not pay for reading `successor`.
    function _notOperator() private view {
        if (successor != address(0)) revert RegistrySealed(successor);
        revert NotOperator(msg.sender);
    }

    function _requireOpen() private view {
        if (successor != address(0)) revert RegistrySealed(successor);
    }

    // ---- succession ----

    /// @notice Everything a verifier checks of a link in one call.
    function registryLink()
        external
        view
        returns (
            address predecessor_,
            uint64 predecessorCheckpointCount_,
            uint64 predecessorTreeSize_,
            bytes32 predecessorCommitment_,
            address successor_
        )
    {
        return (predecessor, predecessorCheckpointCount, predecessorTreeSize, predecessorCommitment, successor);
    }

    /// @notice Hand over to `next`, which must name this registry as its predecessor and record exactly its final
    /// checkpoint. Once: the operator role is given up, so no further anchor or registration happens here.
    function sealFor(address next) external onlyOperator {
        if (next == address(0) || next.code.length == 0) revert BadSuccessor(next);
        CarbonTraceRegistry candidate = CarbonTraceRegistry(next);
        uint48 count = _checkpointCount;
        bytes32 last = count == 0 ? bytes32(0) : _commitments[count - 1];
        if (
            candidate.predecessor() != address(this) || candidate.predecessorCheckpointCount() != count
                || candidate.predecessorTreeSize() != _latestTreeSize || candidate.predecessorCommitment() != last
        ) revert BadSuccessor(next);
        successor = next;
        pendingOperator = address(0);
        emit OperatorTransferred(operator, address(0));
        operator = address(0);
        emit Sealed(next, count, _latestTreeSize);
    }

    /// @dev Carrying registrations over is open only on a successor, before its first anchor.
    function _requireMigrating() private view {
        if (predecessor == address(0) || _checkpointCount != predecessorCheckpointCount) revert MigrationClosed();
    }

    /// @notice Carry a binding's state from the predecessor (its parties registered here first).
    function importBinding(bytes32 enterpriseId, bytes32 platformId, BindingState state) external onlyOperator {
        _requireMigrating();
        if (_enterprises[enterpriseId].account == address(0)) revert UnknownEnterprise(enterpriseId);
        _requirePlatform(platformId);
        _bindings[enterpriseId][platformId] = state;
        emit BindingCarried(enterpriseId, platformId, state);
    }

    /// @notice Carry a key record from the predecessor with its history (activeFrom, revokedAt). Device and
    /// gateway ids join their enterprise's list in the order their first key is carried.
    function importKey(
        SignerKind kind,
        bytes32 enterpriseId,
        bytes32 signerId,
        bytes32 keyFingerprint,
        KeyState state,
        uint64 activeFrom,
        uint64 revokedAt
    ) external onlyOperator {
        _requireMigrating();
        if (signerId == bytes32(0) || keyFingerprint == bytes32(0)) revert ZeroId();
        _requireUnregisteredKey(keyFingerprint);
        uint64 base = predecessorCheckpointCount;
        bool revoked = state == KeyState.Revoked;
        if (
            state == KeyState.None || kind == SignerKind.None || activeFrom > base
                || (revoked ? (revokedAt < activeFrom || revokedAt > base) : revokedAt != 0)
        ) revert BadCarriedKey(keyFingerprint);
        if (kind == SignerKind.Cloud) {
            if (!revoked) {
                bytes32 active = _cloudKeys[signerId];
                if (active != bytes32(0)) revert SignerHasActiveKey(signerId, active);
                _cloudKeys[signerId] = keyFingerprint;
            }
        } else {
            if (_enterprises[enterpriseId].account == address(0)) revert UnknownEnterprise(enterpriseId);
            Signer storage signer = kind == SignerKind.Device ? _devices[signerId] : _gateways[signerId];
            bytes32 owner = signer.enterpriseId;
            if (owner != bytes32(0) && owner != enterpriseId) revert SignerOfOtherEnterprise(signerId, owner);
            if (owner == bytes32(0)) {
                signer.enterpriseId = enterpriseId;
                _signers[enterpriseId][kind].push(signerId);
            }
            if (!revoked) {
                if (signer.keyFingerprint != bytes32(0)) revert SignerHasActiveKey(signerId, signer.keyFingerprint);
                signer.keyFingerprint = keyFingerprint;
            }
        }
        _keys[keyFingerprint] = KeyRecord(state, kind, activeFrom, revokedAt, signerId);
        emit KeyCarried(signerId, keyFingerprint, kind, state);
    }

    // ---- operator hand-over ----

    function transferOperator(address newOperator) external onlyOperator {
        if (newOperator == address(0)) revert ZeroAddress();
        pendingOperator = newOperator;
        emit OperatorTransferStarted(msg.sender, newOperator);
    }

    function acceptOperator() external {
        if (msg.sender != pendingOperator) revert NotPendingOperator(msg.sender);
        address previous = operator;
        operator = msg.sender;
        pendingOperator = address(0);
        emit OperatorTransferred(previous, msg.sender);
    }

    // ---- parties ----

    function registerEnterprise(bytes32 enterpriseId, address account, string calldata name) external onlyOperator {
        if (enterpriseId == bytes32(0)) revert ZeroId();
        if (account == address(0)) revert ZeroAddress();
        if (_enterprises[enterpriseId].account != address(0)) revert EnterpriseAlreadyRegistered(enterpriseId);
        _enterprises[enterpriseId] = Party(account, name);
        emit EnterpriseRegistered(enterpriseId, account, name);
    }

    function registerPlatform(bytes32 platformId, address account, string calldata name) external onlyOperator {
        if (platformId == bytes32(0)) revert ZeroId();
        if (account == address(0)) revert ZeroAddress();
        if (_platforms[platformId].account != address(0)) revert PlatformAlreadyRegistered(platformId);
        _platforms[platformId] = Party(account, name);
        emit PlatformRegistered(platformId, account, name);
    }

    function enterprise(bytes32 enterpriseId) external view returns (address account, string memory name) {
        Party storage party = _enterprises[enterpriseId];
        return (party.account, party.name);
    }

    function platform(bytes32 platformId) external view returns (address account, string memory name) {
        Party storage party = _platforms[platformId];
        return (party.account, party.name);
    }

    // ---- enterprise <-> platform binding ----

    function requestBinding(bytes32 enterpriseId, bytes32 platformId) external {
        _requireEnterpriseAccount(enterpriseId);
        _request(enterpriseId, platformId, msg.sender);
    }

    function confirmBinding(bytes32 enterpriseId, bytes32 platformId) external {
        _requirePlatformAccount(platformId);
        _decide(enterpriseId, platformId, true, msg.sender);
    }

    function rejectBinding(bytes32 enterpriseId, bytes32 platformId) external {
        _requirePlatformAccount(platformId);
        _decide(enterpriseId, platformId, false, msg.sender);
    }

    /// @notice The enterprise's consent, signed by its registered account's key and relayed by anyone.
    function requestBindingSigned(bytes32 enterpriseId, bytes32 platformId, bytes calldata signature) external {
        address account = _enterprises[enterpriseId].account;
        if (account == address(0)) revert UnknownEnterprise(enterpriseId);
        _consume(account, enterpriseId, platformId, ACTION_REQUEST, signature);
        _request(enterpriseId, platformId, account);
    }

    /// @notice The platform's consent, signed by its registered account's key and relayed by anyone.
    function confirmBindingSigned(bytes32 enterpriseId, bytes32 platformId, bytes calldata signature) external {
        address account = _platforms[platformId].account;
        if (account == address(0)) revert UnknownPlatform(platformId);
        _consume(account, enterpriseId, platformId, ACTION_CONFIRM, signature);
        _decide(enterpriseId, platformId, true, account);
    }

    function rejectBindingSigned(bytes32 enterpriseId, bytes32 platformId, bytes calldata signature) external {
        address account = _platforms[platformId].account;
        if (account == address(0)) revert UnknownPlatform(platformId);
        _consume(account, enterpriseId, platformId, ACTION_REJECT, signature);
        _decide(enterpriseId, platformId, false, account);
    }

    /// @notice The EIP-712 domain separator (name "CarbonTraceRegistry", version "1", this chain, this contract).
    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                _DOMAIN_TYPEHASH, keccak256("CarbonTraceRegistry"), keccak256("1"), block.chainid, address(this)
            )
        );
    }

    function _request(bytes32 enterpriseId, bytes32 platformId, address sender) private {
        _requireOpen();
        _requirePlatform(platformId);
        BindingState current = _bindings[enterpriseId][platformId];
        if (current == BindingState.Requested || current == BindingState.Bound) revert InvalidBindingState(current);
        _bindings[enterpriseId][platformId] = BindingState.Requested;
        emit BindingRequested(enterpriseId, platformId, sender);
    }

    function _decide(bytes32 enterpriseId, bytes32 platformId, bool confirm, address sender) private {
        _requireOpen();
        BindingState current = _bindings[enterpriseId][platformId];
        if (current != BindingState.Requested) revert InvalidBindingState(current);
        if (confirm) {
            _bindings[enterpriseId][platformId] = BindingState.Bound;
            emit BindingConfirmed(enterpriseId, platformId, sender);
        } else {
            _bindings[enterpriseId][platformId] = BindingState.Rejected;
            emit BindingRejected(enterpriseId, platformId, sender);
        }
    }

    /// @dev Check that `account` signed this consent with its current nonce, then use the nonce up.
    function _consume(address account, bytes32 enterpriseId, bytes32 platformId, uint8 action, bytes calldata sig)
        private
    {
        if (sig.length != 65) revert BadSignature();
        uint256 nonce = nonces[account];
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                domainSeparator(),
                keccak256(abi.encode(BINDING_CONSENT_TYPEHASH, enterpriseId, platformId, action, nonce))
            )
        );
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (uint256(s) > _HALF_N || (v != 27 && v != 28)) revert BadSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0) || signer != account) revert BadSignature();
        nonces[account] = nonce + 1;
    }

    function unbind(bytes32 enterpriseId, bytes32 platformId) external {
        _requireOpen();
        address enterpriseAccount = _enterprises[enterpriseId].account;
        address platformAccount = _platforms[platformId].account;
        if (msg.sender != enterpriseAccount && msg.sender != platformAccount && msg.sender != operator) {
            revert NotBindingParty(enterpriseId, platformId, msg.sender);
        }
        BindingState current = _bindings[enterpriseId][platformId];
        if (current != BindingState.Bound) revert InvalidBindingState(current);
        _bindings[enterpriseId][platformId] = BindingState.Revoked;
        emit BindingRevoked(enterpriseId, platformId, msg.sender);
    }

    function bindingState(bytes32 enterpriseId, bytes32 platformId) external view returns (BindingState) {
        return _bindings[enterpriseId][platformId];
    }

    // ---- signer keys: devices (readings), gateways (batches, aggregates), the cloud (checkpoints, statements) ----

    function registerDeviceKey(bytes32 enterpriseId, bytes32 deviceId, bytes32 keyFingerprint) external {
        _registerSignerKey(_devices[deviceId], SignerKind.Device, enterpriseId, deviceId, keyFingerprint);
        emit DeviceKeyRegistered(enterpriseId, deviceId, keyFingerprint, msg.sender);
    }

    function revokeDeviceKey(bytes32 enterpriseId, bytes32 deviceId, bytes32 keyFingerprint) external {
        _revokeSignerKey(_devices[deviceId], enterpriseId, deviceId, keyFingerprint);
        emit DeviceKeyRevoked(enterpriseId, deviceId, keyFingerprint, msg.sender);
    }

    function registerGatewayKey(bytes32 enterpriseId, bytes32 gatewayId, bytes32 keyFingerprint) external {
        _registerSignerKey(_gateways[gatewayId], SignerKind.Gateway, enterpriseId, gatewayId, keyFingerprint);
        emit GatewayKeyRegistered(enterpriseId, gatewayId, keyFingerprint, msg.sender);
    }

    function revokeGatewayKey(bytes32 enterpriseId, bytes32 gatewayId, bytes32 keyFingerprint) external {
        _revokeSignerKey(_gateways[gatewayId], enterpriseId, gatewayId, keyFingerprint);
        emit GatewayKeyRevoked(enterpriseId, gatewayId, keyFingerprint, msg.sender);
    }

    function registerCloudKey(bytes32 cloudId, bytes32 keyFingerprint) external onlyOperator {
        if (cloudId == bytes32(0) || keyFingerprint == bytes32(0)) revert ZeroId();
        _requireUnregisteredKey(keyFingerprint);
        bytes32 active = _cloudKeys[cloudId];
        if (active != bytes32(0)) revert SignerHasActiveKey(cloudId, active);
        _activateKey(SignerKind.Cloud, cloudId, keyFingerprint);
        _cloudKeys[cloudId] = keyFingerprint;
        emit CloudKeyRegistered(cloudId, keyFingerprint, msg.sender);
    }

    function revokeCloudKey(bytes32 cloudId, bytes32 keyFingerprint) external onlyOperator {
        if (_cloudKeys[cloudId] != keyFingerprint || keyFingerprint == bytes32(0)) revert KeyNotActive(keyFingerprint);
        _cloudKeys[cloudId] = bytes32(0);
        _deactivateKey(keyFingerprint);
        emit CloudKeyRevoked(cloudId, keyFingerprint, msg.sender);
    }

    /// @return enterpriseId the device's enterprise (zero if never registered)
    /// @return keyFingerprint the active key (zero if none)
    function deviceKey(bytes32 deviceId) external view returns (bytes32 enterpriseId, bytes32 keyFingerprint) {
        Signer storage device = _devices[deviceId];
        return (device.enterpriseId, device.keyFingerprint);
    }

    /// @return enterpriseId the gateway's enterprise (zero if never registered)
    /// @return keyFingerprint the active key (zero if none)
    function gatewayKey(bytes32 gatewayId) external view returns (bytes32 enterpriseId, bytes32 keyFingerprint) {
        Signer storage gateway = _gateways[gatewayId];
        return (gateway.enterpriseId, gateway.keyFingerprint);
    }

    /// @return keyFingerprint the cloud id's active key (zero if none)
    function cloudKey(bytes32 cloudId) external view returns (bytes32 keyFingerprint) {
        return _cloudKeys[cloudId];
    }

    /// @return state None (never registered), Active or Revoked
    /// @return kind who holds the key
    /// @return signerId the device, gateway or cloud id
    /// @return enterpriseId the device's or gateway's enterprise (zero for cloud keys and unknown keys)
    /// @return activeFrom the checkpoint count when the key was registered
    /// @return revokedAt the checkpoint count when the key was revoked (zero unless Revoked)
    function keyState(bytes32 keyFingerprint)
        external
        view
        returns (
            KeyState state,
            SignerKind kind,
            bytes32 signerId,
            bytes32 enterpriseId,
            uint64 activeFrom,
            uint64 revokedAt
        )
    {
        KeyRecord storage key = _keys[keyFingerprint];
        kind = key.kind;
        signerId = key.signerId;
        if (kind == SignerKind.Device) {
            enterpriseId = _devices[signerId].enterpriseId;
        } else if (kind == SignerKind.Gateway) {
            enterpriseId = _gateways[signerId].enterpriseId;
        }
        return (key.state, kind, signerId, enterpriseId, key.activeFrom, key.revokedAt);
    }

    /// @return how many device (or gateway) ids the enterprise ever registered a key for
    function signerCount(bytes32 enterpriseId, SignerKind kind) external view returns (uint256) {
        return _signers[enterpriseId][kind].length;
    }

    /// @return signerId the index-th device (or gateway) id of the enterprise, in first-registration order
    function signerAt(bytes32 enterpriseId, SignerKind kind, uint256 index) external view returns (bytes32 signerId) {
        bytes32[] storage ids = _signers[enterpriseId][kind];
        if (index >= ids.length) revert SignerOutOfRange(enterpriseId, kind, index, ids.length);
        return ids[index];
    }

    function _registerSignerKey(
        Signer storage signer,
        SignerKind kind,
        bytes32 enterpriseId,
        bytes32 signerId,
        bytes32 keyFingerprint
    ) private {
        _requireEnterpriseOrOperator(enterpriseId);
        if (signerId == bytes32(0) || keyFingerprint == bytes32(0)) revert ZeroId();
        _requireUnregisteredKey(keyFingerprint);
        bytes32 owner = signer.enterpriseId;
        if (owner != bytes32(0) && owner != enterpriseId) revert SignerOfOtherEnterprise(signerId, owner);
        if (signer.keyFingerprint != bytes32(0)) revert SignerHasActiveKey(signerId, signer.keyFingerprint);
        _activateKey(kind, signerId, keyFingerprint);
        if (owner == bytes32(0)) {
            // first registration of this id, ever (the enterprise id is never cleared): list it once
            signer.enterpriseId = enterpriseId;
            _signers[enterpriseId][kind].push(signerId);
        }
        signer.keyFingerprint = keyFingerprint;
    }

    function _revokeSignerKey(
        Signer storage signer,
        bytes32 enterpriseId,
        bytes32 signerId,
        bytes32 keyFingerprint
    ) private {
        _requireEnterpriseOrOperator(enterpriseId);
        if (signer.enterpriseId != enterpriseId) revert SignerOfOtherEnterprise(signerId, signer.enterpriseId);
        if (signer.keyFingerprint != keyFingerprint || keyFingerprint == bytes32(0)) {
            revert KeyNotActive(keyFingerprint);
        }
        signer.keyFingerprint = bytes32(0);
        _deactivateKey(keyFingerprint);
    }

    /// @dev A fingerprint is registered once, ever, whatever the kind of signer.
    function _requireUnregisteredKey(bytes32 keyFingerprint) private view {
        KeyState state = _keys[keyFingerprint].state;
        if (state == KeyState.Revoked) revert KeyRevoked(keyFingerprint);
        if (state == KeyState.Active) revert KeyAlreadyRegistered(keyFingerprint);
    }

    function _activateKey(SignerKind kind, bytes32 signerId, bytes32 keyFingerprint) private {
        _keys[keyFingerprint] = KeyRecord(KeyState.Active, kind, _checkpointCount, 0, signerId);
    }

    function _deactivateKey(bytes32 keyFingerprint) private {
        KeyRecord storage key = _keys[keyFingerprint];
        key.state = KeyState.Revoked;
        key.revokedAt = _checkpointCount;
    }

    // ---- Merkle-log checkpoints ----

    function anchorCheckpoint(uint64 treeSize, bytes32 root, string calldata cid) external onlyOperator {
        uint256 cidLength = bytes(cid).length;
        if (cidLength == 0 || cidLength > MAX_CID_LENGTH) revert CidLength(cidLength);
        if (treeSize > MAX_TREE_SIZE) revert TreeSizeTooLarge(treeSize);
        uint48 latest = _latestTreeSize;
        if (treeSize <= latest) revert TreeSizeNotGrowing(latest, treeSize);
        uint48 count = _checkpointCount;
        _commitments[count] = keccak256(abi.encodePacked(treeSize, root, cid));
        unchecked {
            // one write of the shared slot; a uint48 of checkpoints, one per transaction, does not overflow
            (_checkpointCount, _latestTreeSize) = (count + 1, uint48(treeSize));
        }
        emit CheckpointAnchored(count, treeSize, root, cid);
    }

    function checkpointCount() external view returns (uint256) {
        return _checkpointCount;
    }

    function latestTreeSize() external view returns (uint256) {
        return _latestTreeSize;
    }

    /// @notice The commitment to checkpoint `index`'s tree size, root and cid; its fields are in its event.
    function checkpointCommitment(uint256 index) external view returns (bytes32) {
        uint256 count = _checkpointCount;
        if (index >= count) revert CheckpointOutOfRange(index, count);
        if (index < predecessorCheckpointCount) revert CheckpointOnPredecessor(index, predecessor);
        return _commitments[index];
    }

    // ---- internal checks ----

    function _requireEnterpriseOrOperator(bytes32 enterpriseId) private view {
        _requireOpen();
        address account = _enterprises[enterpriseId].account;
        if (account == address(0)) revert UnknownEnterprise(enterpriseId);
        if (msg.sender != account && msg.sender != operator) revert NotEnterpriseAccount(enterpriseId, msg.sender);
    }

    function _requireEnterpriseAccount(bytes32 enterpriseId) private view {
        address account = _enterprises[enterpriseId].account;
        if (account == address(0)) revert UnknownEnterprise(enterpriseId);
        if (msg.sender != account) revert NotEnterpriseAccount(enterpriseId, msg.sender);
    }

    function _requirePlatform(bytes32 platformId) private view {
        if (_platforms[platformId].account == address(0)) revert UnknownPlatform(platformId);
    }

    function _requirePlatformAccount(bytes32 platformId) private view {
        address account = _platforms[platformId].account;
        if (account == address(0)) revert UnknownPlatform(platformId);
        if (msg.sender != account) revert NotPlatformAccount(platformId, msg.sender);
    }
}
